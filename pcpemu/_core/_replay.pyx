# The per-event loops of a trace replay (pcpemu.runs.replay, pcpemu.runs.kstate), one
# pass over a batch of EVENT_DTYPE rows each, in C without the GIL. The Python side
# keeps the state between batches and the meaning; these loops only count.

from libc.stdint cimport int8_t, int16_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, realloc
from libc.string cimport memset

import numpy as np

# The event kinds, op codes and op row of the core (enum pcpemu_event_kind,
# enum pcpemu_opcode, struct pcpemu_op).
include "_kernel_h.pxi"

# pcpemu.kernel.ftrace's kinds that are no core tracepoint: a vmstat worker run, and
# a free that found its CPU's pcp locked (mark_pcp_locked_frees).
cdef enum:
    VMSTAT_UPDATE = 7
    MM_PAGE_FREE_PCP_LOCKED = 12

# What a pfn's last traced event left (PfnTable).
cdef enum:
    FREED = 0       # a free (in the batch it was seen in; before that: nothing known)
    LIVE = 1        # an allocation, not freed yet


cdef inline bint has_pcp_list(int order, const uint8_t[::1] pcp_orders) noexcept nogil:
    # pcp_allowed_order for an event's order (-1: none printed); orders past the table
    # take its last entry.
    return order >= 0 and pcp_orders[min(<Py_ssize_t>order, pcp_orders.shape[0] - 1)]


cdef inline Py_ssize_t zone_of(int64_t pfn, const int64_t[::1] zone_start, const int64_t[::1] zone_end) noexcept nogil:
    # The zone (index into zone_start, ascending) whose span holds pfn: the last that
    # starts at or below it, as kstate.UntracedPool.zone_of; -1 for none.
    cdef Py_ssize_t b, z = -1
    for b in range(zone_start.shape[0]):
        if zone_start[b] <= pfn:
            z = b
    return z if z >= 0 and pfn < zone_end[z] else -1


# ---------------------------------------------------------------------------------------
# Frees that found the pcp locked.

cdef enum:
    PCP_UNLOCKED = -2
#: A CPU whose task holds no zone's pcp->lock (mark_pcp_locked_frees' windows).
UNLOCKED = PCP_UNLOCKED


def mark_pcp_locked_frees(uint8_t[:] kind, const uint16_t[:] cpu, const int64_t[:] pfn, const int8_t[:] order,
                          const int8_t[:] percpu_refill, const uint8_t[::1] pcp_orders,
                          const int64_t[::1] zone_start, const int64_t[::1] zone_end, int16_t[::1] refilling,
                          int16_t[::1] committing):
    """Mark, in place, the frees of a batch that found their CPU's pcp locked
    (MM_PAGE_FREE_PCP_LOCKED): frees on a CPU whose task holds pcp->lock of the
    page's zone are an interrupt's (softirq's RCU callbacks, I/O completions),
    free_frozen_pages' pcp_spin_trylock fails and the page goes to the buddy
    (free_one_page), no pcp count, free_count or alloc_factor touched. A task holds
    the lock of one zone

    - allocating, from rmqueue_pcplist through the refill (rmqueue_bulk, its
      percpu_refill=1 events, of the refilled zone) until it unlocks, and
      mm_page_alloc follows; the CPU's mm_page_alloc, a drain, a batched free's
      commit or a vmstat worker run ends this window (in the 6.18 captures every
      such page the trace shows again is next taken from the buddy);
    - committing a batch of folios (free_unref_folios: one mm_page_free_batched per
      folio, under the lock of their zone from the first to the last): a run of
      frees between two of its records of one zone, the second not of a page the
      run freed (which would make the run the next batch's mm_page_free records,
      from the task, unlocked). A run the batch's end cuts is left as it is.

    :param zone_start, zone_end: the zones' pfn ranges (kstate.zone_table); empty:
        one zone.
    :param refilling: per CPU, the zone (its index; -1 outside every zone) whose
        lock an allocation holds; committing: whose lock a batched free's commits
        hold; UNLOCKED for none (both carried between batches).
    :return: the number of frees marked.
    """
    cdef Py_ssize_t i, j, r, n = kind.shape[0], marked = 0, ncpu = refilling.shape[0]
    cdef int c, k
    cdef bint locked
    cdef Py_ssize_t[::1] after = np.full(n, n, np.intp)     # the next event on the same CPU
    cdef Py_ssize_t[::1] last = np.full(ncpu, -1, np.intp)
    if committing.shape[0] != ncpu or zone_end.shape[0] != zone_start.shape[0]:
        raise ValueError(f"{ncpu} CPUs of refill windows, {committing.shape[0]} of commits; "
                         f"{zone_start.shape[0]} zone starts, {zone_end.shape[0]} ends")
    with nogil:
        for i in range(n):
            c = cpu[i]
            if c < ncpu:
                if last[c] >= 0:
                    after[last[c]] = i
                last[c] = i
        for i in range(n):
            c, k = cpu[i], kind[i]
            if c >= ncpu:
                continue
            if k == MM_PAGE_ALLOC_ZONE_LOCKED:
                if percpu_refill[i] == 1:
                    refilling[c] = zone_of(pfn[i], zone_start, zone_end)
                committing[c] = PCP_UNLOCKED
            elif k == MM_PAGE_FREE:
                if refilling[c] != PCP_UNLOCKED:
                    if refilling[c] == zone_of(pfn[i], zone_start, zone_end) and has_pcp_list(order[i], pcp_orders):
                        kind[i] = MM_PAGE_FREE_PCP_LOCKED
                        marked += 1
                elif committing[c] != PCP_UNLOCKED:
                    j = i
                    while j < n and kind[j] == MM_PAGE_FREE:
                        j = after[j]
                    locked = j < n and kind[j] == MM_PAGE_FREE_BATCHED \
                        and zone_of(pfn[j], zone_start, zone_end) == committing[c]
                    r = i
                    while locked and r != j:
                        locked = pfn[r] != pfn[j]
                        r = after[r]
                    r = i
                    while locked and r != j:
                        if zone_of(pfn[r], zone_start, zone_end) == committing[c] \
                                and has_pcp_list(order[r], pcp_orders):
                            kind[r] = MM_PAGE_FREE_PCP_LOCKED
                            marked += 1
                        r = after[r]
                committing[c] = PCP_UNLOCKED
            elif k == MM_PAGE_FREE_BATCHED:
                refilling[c] = PCP_UNLOCKED
                committing[c] = zone_of(pfn[i], zone_start, zone_end)
            elif k == MM_PAGE_PCPU_DRAIN:
                refilling[c] = PCP_UNLOCKED
            elif k == MM_PAGE_ALLOC or k == VMSTAT_UPDATE:
                refilling[c] = PCP_UNLOCKED
                committing[c] = PCP_UNLOCKED
    return marked


# ---------------------------------------------------------------------------------------
# Alloc/free matching.

cdef struct PfnEntry:
    int64_t pfn         # -1: empty
    int64_t slot
    int64_t batch       # the batch of the last free (FREED)
    int64_t free_at     # and its event index in that batch
    int8_t order
    int8_t state
    int16_t pcp_cpu     # the CPU whose pcp list its last free or refill put it on; -1: none known
    uint8_t untracked   # no event yet, or its last put it in the buddy (a drain, a free to the buddy)


cdef inline uint64_t pfn_slot(int64_t pfn, int shift) noexcept nogil:
    # The home entry of a pfn in a table of 1 << (64 - shift) entries: runs of 64 pfns
    # hashed as one, the pfns of a run side by side, so that the neighbours a refill
    # or a drain names share cachelines (the mix capture's matching: 0.11 -> 0.09 s;
    # 1 M pfns spread at random: 0.30 -> 0.33 s).
    return ((((<uint64_t>pfn >> 6) * 0x9E3779B97F4A7C15ULL) >> (shift + 6)) << 6) | (<uint64_t>pfn & 63)


cdef class PfnTable:
    """pfn -> what its last traced event left: the slot and order of a live traced
    allocation, or a free (open addressing; as big as the pfns the trace names)."""

    cdef PfnEntry *entries
    cdef Py_ssize_t size, used
    cdef int shift

    def __cinit__(self):
        self.size = 1 << 16
        self.shift = 64 - 16
        self.entries = <PfnEntry *>calloc(self.size, sizeof(PfnEntry))
        if self.entries == NULL:
            raise MemoryError()
        for i in range(self.size):
            self.entries[i].pfn = -1

    def __dealloc__(self):
        free(self.entries)

    def __len__(self):
        return self.used

    cdef int grow(self) except -1 nogil:
        cdef PfnEntry *old = self.entries
        cdef Py_ssize_t n = self.size, i, j
        cdef PfnEntry *fresh = <PfnEntry *>calloc(2 * n, sizeof(PfnEntry))
        if fresh == NULL:
            with gil:
                raise MemoryError()
        for i in range(2 * n):
            fresh[i].pfn = -1
        self.entries, self.size, self.shift = fresh, 2 * n, self.shift - 1
        for i in range(n):
            if old[i].pfn >= 0:
                j = pfn_slot(old[i].pfn, self.shift)
                while self.entries[j].pfn >= 0:
                    j = (j + 1) & (self.size - 1)
                self.entries[j] = old[i]
        free(old)
        return 0

    cdef PfnEntry *get(self, int64_t pfn) except NULL nogil:
        # The pfn's entry, made (FREED in no batch) when it has none.
        cdef Py_ssize_t j
        if 2 * (self.used + 1) > self.size:
            self.grow()
        j = pfn_slot(pfn, self.shift)
        while self.entries[j].pfn >= 0:
            if self.entries[j].pfn == pfn:
                return &self.entries[j]
            j = (j + 1) & (self.size - 1)
        self.entries[j].pfn = pfn
        self.entries[j].state = FREED
        self.entries[j].batch = -1
        self.entries[j].pcp_cpu = -1
        self.entries[j].untracked = 1
        self.used += 1
        return &self.entries[j]


# Counters match() adds to, in this order.
MATCH_COUNTS = ("failed_alloc", "free_batched", "missing_frees", "free_before_trace", "free_untraced_alloc",
                "free_wrong_order")


def match(PfnTable table, int64_t batch, const uint8_t[:] kind, const uint16_t[:] cpu, const int64_t[:] pfn,
          const int8_t[:] order, const uint32_t[:] gfp, const int8_t[:] percpu_refill,
          const int64_t[::1] alloc_slots, bint untraced, const int64_t[::1] decay_pos,
          const int64_t[::1] decay_cpu, uint8_t[::1] ops, int64_t[::1] sel, int64_t[::1] prev_free,
          int16_t[::1] pcp_owner, uint8_t[::1] unplaced, int64_t[::1] counts):
    """The ops of a batch: each free tied to its traced allocation, in trace order.

    An allocation takes the next of alloc_slots; a free of a live allocation of its
    order takes that slot. A free whose pfn has no live allocation (none before the
    trace, or freed already) becomes an op only when ``untraced``, with slot -1 (the
    caller gives it one). A free that found its CPU's pcp locked
    (MM_PAGE_FREE_PCP_LOCKED) is an OP_FREE with OP_FREE_PCP_LOCKED, its page in the
    buddy after it. A vmstat worker run (OP_DECAY) goes in before the first op of an
    event at or after its position.

    Each drained page's pcp owner comes out too: the CPU of its last free or refill
    since it was last allocated or drained. A drain traced on another CPU is a remote
    one (drain_all_pages drains every CPU's lists from the caller, drain_pages_zone).

    :param batch: the batch's number (a free seen in an earlier batch leaves nothing known).
    :param decay_pos: the event index before which each worker run goes, ascending.
    :param decay_cpu: the CPU of each.
    :param ops: out, the ops (an OP_DTYPE array as bytes, room for every event and run).
    :param sel: out, the event index of each op (of a run: its position).
    :param prev_free: out, per op: for a free of an untraced page whose pfn was freed
        earlier in this batch and not drained since, the event index of that free;
        else -1.
    :param pcp_owner: out, per event: of a drain, its page's pcp owner (-1: not known);
        of any other event, -1.
    :param unplaced: out, per event: 1 for an allocation of a page with no event
        before it in the trace, or whose last put it in the buddy (its drain, or a
        free that found the pcp locked; no refill or free put it on a pcp list
        since: PcpLists' arrivals), else 0.
    :param counts: added to, as MATCH_COUNTS.
    :return: the number of ops.
    """
    cdef Py_ssize_t n = kind.shape[0], i, a = 0, nops = 0, d = 0, ndecay = decay_pos.shape[0]
    cdef PfnEntry *e
    cdef pcpemu_op *out = <pcpemu_op *>&ops[0] if ops.shape[0] else NULL
    cdef int k
    cdef int64_t s
    with nogil:
        for i in range(n + 1):
            while d < ndecay and (i == n or decay_pos[d] <= i):
                out[nops].op, out[nops].order, out[nops].cpu, out[nops].gfp, out[nops].slot = \
                    OP_DECAY, 0, decay_cpu[d], 0, 0
                sel[nops] = decay_pos[d]
                nops += 1
                d += 1
            if i == n:
                break
            k = kind[i]
            pcp_owner[i] = -1
            unplaced[i] = 0
            if pfn[i] >= 0 and (k == MM_PAGE_PCPU_DRAIN or (k == MM_PAGE_ALLOC_ZONE_LOCKED and percpu_refill[i] == 1)):
                e = table.get(pfn[i])
                if k == MM_PAGE_PCPU_DRAIN:
                    # Back in the buddy: an untraced allocation of it comes after
                    # a refill, not after the free that put it on the list.
                    pcp_owner[i], e.pcp_cpu, e.free_at, e.untracked = e.pcp_cpu, -1, -1, 1
                else:
                    e.pcp_cpu, e.untracked = cpu[i], 0
                continue
            if k == MM_PAGE_ALLOC:
                if pfn[i] < 0:
                    counts[0] += 1
                    continue
                e = table.get(pfn[i])
                if e.state == LIVE:
                    counts[2] += 1      # its free is not in the trace
                unplaced[i] = e.untracked
                e.state, e.slot, e.order, e.pcp_cpu, e.untracked = LIVE, alloc_slots[a], order[i], -1, 0
                a += 1
                s = e.slot
            elif k == MM_PAGE_FREE_BATCHED:
                counts[1] += 1
                if pfn[i] >= 0:
                    # free_unref_folios puts the page on the pcp of the CPU it commits
                    # on, which is not its mm_page_free's when the task moved between.
                    e = table.get(pfn[i])
                    if e.state == FREED:
                        e.pcp_cpu = cpu[i]
                continue
            elif k == MM_PAGE_FREE or k == MM_PAGE_FREE_PCP_LOCKED:
                e = table.get(pfn[i])
                s = -2
                prev_free[nops] = -1
                if e.state == LIVE:
                    if e.order == order[i]:
                        s = e.slot
                    else:
                        counts[5] += 1
                else:
                    counts[3 if e.batch != batch else 4] += 1
                    if untraced:
                        s = -1
                        if e.batch == batch:
                            prev_free[nops] = e.free_at
                e.state, e.batch, e.free_at, e.pcp_cpu, e.untracked = FREED, batch, i, cpu[i], 0
                if k == MM_PAGE_FREE_PCP_LOCKED:
                    e.free_at, e.pcp_cpu, e.untracked = -1, -1, 1      # in the buddy, as if drained
                if s == -2:
                    continue
            else:
                continue
            out[nops].op = OP_ALLOC if k == MM_PAGE_ALLOC else OP_FREE
            out[nops].order = <uint8_t>order[i]
            out[nops].cpu = cpu[i]
            out[nops].gfp = OP_FREE_PCP_LOCKED if k == MM_PAGE_FREE_PCP_LOCKED else gfp[i]
            out[nops].slot = s
            sel[nops] = i
            nops += 1
    return nops


# ---------------------------------------------------------------------------------------
# Figures from kmem events (pcpemu.runs.replay._EventFigures).

cdef enum:
    RUN_NONE = 0
    RUN_REFILL = 1
    RUN_DRAIN = 2

# Rows of the counts figures() adds to.
FIGURE_COUNTS = ("refill_calls", "drained_pages", "drain_calls", "fallbacks", "buddy_allocs", "nonpcp_frees")


def figures(const uint8_t[:] kind, const uint16_t[:] cpu, const int8_t[:] order, const int8_t[:] percpu_refill,
            const int64_t[:] op, const uint8_t[::1] pcp_orders, int64_t[:, ::1] blocks, int64_t[:, ::1] acc,
            int8_t[::1] last_run, int64_t[::1] last_op):
    """Add a batch's events to the per-CPU figures, in event order.

    :param op: per event, the op it fired in (a run never spans two), or empty.
    :param blocks: refill blocks per (cpu, order).
    :param acc: the FIGURE_COUNTS rows per cpu.
    :param last_run: per CPU, the run its last event left open (carried between batches).
    """
    cdef Py_ssize_t n = kind.shape[0], i, norders = blocks.shape[1]
    cdef int k, c, o, run
    cdef int64_t this_op
    cdef bint has_op = op.shape[0] > 0
    for i in range(n):
        if kind[i] == MM_PAGE_ALLOC_ZONE_LOCKED and percpu_refill[i] == 1 and not 0 <= order[i] < norders:
            raise IndexError(f"refill block of order {order[i]}")
    with nogil:
        for i in range(n):
            k, c, o = kind[i], cpu[i], order[i]
            run = RUN_NONE
            if k == MM_PAGE_ALLOC_ZONE_LOCKED:
                if percpu_refill[i] == 1:
                    blocks[c, o] += 1
                    run = RUN_REFILL
                else:
                    acc[4, c] += 1                  # rmqueue_buddy
            elif k == MM_PAGE_PCPU_DRAIN:
                acc[1, c] += (<int64_t>1) << o
                run = RUN_DRAIN
            elif k == MM_PAGE_ALLOC_EXTFRAG:
                acc[3, c] += 1
                continue                            # inside the same locked section: no cut
            elif k == MM_PAGE_FREE and o >= 0 and not has_pcp_list(o, pcp_orders):
                acc[5, c] += 1                      # free_one_page
            this_op = op[i] if has_op else -1
            if run != RUN_NONE and (run != last_run[c] or this_op != last_op[c]):
                acc[0 if run == RUN_REFILL else 2, c] += 1
            last_run[c] = run
            last_op[c] = this_op


# ---------------------------------------------------------------------------------------
# The trace's own view of the traced kernel (pcpemu.runs.kstate): pageblock types, and
# what each pcp list held when the trace began.

def learn_block_types(const uint8_t[:] kind, const int64_t[:] pfn, const int8_t[:] migratetype,
                      int8_t[::1] block_mt, int64_t end_pfn, int block_shift, int movable):
    """Set block_mt of each pageblock to the list type (a migratetype past the pcp types: movable)
    of the last event of the batch that shows one: mm_page_alloc,
    mm_page_alloc_zone_locked and mm_page_pcpu_drain with a pfn below end_pfn."""
    cdef Py_ssize_t i, n = kind.shape[0]
    cdef int k
    with nogil:
        for i in range(n):
            k = kind[i]
            if (k == MM_PAGE_ALLOC or k == MM_PAGE_ALLOC_ZONE_LOCKED or k == MM_PAGE_PCPU_DRAIN) \
                    and 0 <= pfn[i] < end_pfn and migratetype[i] >= 0:
                block_mt[pfn[i] >> block_shift] = migratetype[i] if migratetype[i] < MIGRATE_PCPTYPES else movable


cdef inline Py_ssize_t close_refill_run(int64_t[:, ::1] run, int64_t[:, ::1] frees, int64_t[:, ::1] out,
                                        Py_ssize_t r, int c) noexcept nogil:
    # A CPU's refill run ends: its row out, and the frees before it counted afresh.
    cdef Py_ssize_t z = run[c, 0]
    out[r, 0], out[r, 1], out[r, 2], out[r, 3], out[r, 4] = max(run[c, 2], 0), c, z, run[c, 1], frees[z, c]
    frees[z, c] = 0
    run[c, 0] = -1
    return r + 1


def refill_runs(const uint8_t[:] kind, const uint16_t[:] cpu, const int64_t[:] pfn, const int8_t[:] order,
                const int8_t[:] percpu_refill, const uint8_t[::1] pcp_orders, const int64_t[::1] zone_start,
                const int64_t[::1] zone_end, int64_t[:, ::1] frees, int64_t[:, ::1] run, int64_t[:, ::1] out):
    """A batch's order-0 refill runs (pcpemu.runs.kstate.AllocFactorRefills): a CPU's
    percpu_refill=1 blocks of one zone back to back (a fallback's extfrag event between
    them does not end a run; any other event of the CPU does), and the pcp frees per
    (zone, CPU) since the run there before.

    :param frees: per (zone, cpu), the pcp frees since the last run there ended (carried).
    :param run: per cpu, the run open where the batch ends: zone (-1: none), blocks, its
        first event index (-1: from an earlier batch) (carried).
    :param out: a row per run the batch ended, in event order: the index of its first
        event (0 for one from an earlier batch), cpu, zone, blocks, the frees before it.
    :return: the number of rows.
    """
    cdef Py_ssize_t i, n = kind.shape[0], r = 0, z
    cdef int c, k, o
    with nogil:
        for i in range(n):
            k, c, o = kind[i], cpu[i], order[i]
            if k == MM_PAGE_ALLOC_EXTFRAG:
                continue
            z = zone_of(pfn[i], zone_start, zone_end) if pfn[i] >= 0 else -1
            if k == MM_PAGE_ALLOC_ZONE_LOCKED and percpu_refill[i] == 1 and o == 0 and z >= 0:
                if run[c, 0] == z:
                    run[c, 1] += 1
                    continue
                if run[c, 0] >= 0:
                    r = close_refill_run(run, frees, out, r, c)
                run[c, 0], run[c, 1], run[c, 2] = z, 1, i
                continue
            if run[c, 0] >= 0:
                r = close_refill_run(run, frees, out, r, c)
            if k == MM_PAGE_FREE and z >= 0 and has_pcp_list(o, pcp_orders):
                frees[z, c] += 1
        for c in range(run.shape[0]):
            run[c, 2] = -1
    return r


def pcp_count_moves(const uint8_t[:] kind, const uint16_t[:] cpu, const int64_t[:] pfn, const int8_t[:] order,
                    const int8_t[:] percpu_refill, const uint8_t[::1] pcp_orders, const int64_t[::1] zone_start,
                    const int64_t[::1] zone_end, int64_t[:, ::1] moved):
    """Add to moved[zone, cpu] what a batch's events did to that pcp->count, in pages:
    a refill block (mm_page_alloc_zone_locked percpu_refill=1) or a free of an order
    with pcp lists adds; an allocation of such an order takes, unless rmqueue_buddy
    served it (its percpu_refill=0 event gives the page back); a drained block takes.
    mm_page_free_batched is a second record of an mm_page_free and counts nothing.
    Events of CPUs or pfns outside moved's zones are left out."""
    cdef Py_ssize_t i, n = kind.shape[0], z, norders = pcp_orders.shape[0]
    cdef Py_ssize_t ncpu = moved.shape[1]
    cdef int k, o
    cdef int64_t sign
    with nogil:
        for i in range(n):
            k, o = kind[i], order[i]
            if o < 0 or o >= norders or pfn[i] < 0 or cpu[i] >= ncpu:
                continue
            if k == MM_PAGE_PCPU_DRAIN:
                sign = -1
            elif not pcp_orders[o]:
                continue
            elif k == MM_PAGE_FREE or k == MM_PAGE_ALLOC_ZONE_LOCKED:
                sign = 1
            elif k == MM_PAGE_ALLOC:
                sign = -1
            else:
                continue
            z = zone_of(pfn[i], zone_start, zone_end)
            if z >= 0:
                moved[z, cpu[i]] += sign << o


def set_off_drains(const uint8_t[:] kind, const uint16_t[:] cpu, const int64_t[:] pfn,
                   const int64_t[::1] zone_start, const int64_t[::1] zone_end, const uint8_t[:, ::1] done):
    """The drain runs of a batch that a free or a vmstat worker run set off (the CPU's
    event before the run's first is an mm_page_free, mm_page_free_batched or
    vmstat_update) on a (zone, cpu) not done yet: their first events' indexes, in
    trace order. A CPU's last event before the batch is not known, so a run at its
    first event is left out."""
    cdef Py_ssize_t i, n = kind.shape[0], z, ncpu = done.shape[1], r = 0
    cdef int64_t[::1] last = np.full(ncpu, -1, np.int64)
    out_arr = np.empty(n, np.int64)
    cdef int64_t[::1] out = out_arr
    cdef int c, k, before
    with nogil:
        for i in range(n):
            c = cpu[i]
            if c >= ncpu:
                continue
            k = kind[i]
            before = kind[last[c]] if last[c] >= 0 else 0
            if k == MM_PAGE_PCPU_DRAIN and (before == MM_PAGE_FREE or before == MM_PAGE_FREE_BATCHED
                                            or before == VMSTAT_UPDATE):
                z = zone_of(pfn[i], zone_start, zone_end)
                if z >= 0 and not done[z, c]:
                    out[r] = i
                    r += 1
            last[c] = i
    return out_arr[:r]


cdef inline int64_t list_key(int k, int64_t c, int64_t p, int o, int mt, int refill, const int64_t[::1] zone_start,
                             const int64_t[::1] zone_end, const int8_t[::1] block_mt, int block_shift, int movable,
                             const int64_t[:, ::1] pindex, Py_ssize_t ncpu, Py_ssize_t nlists,
                             int8_t *delta, uint8_t *guess) noexcept nogil:
    # The (zone, cpu, list) an event moves a block on, -1 for none, and by how much;
    # guess: a free whose pageblock's type no event showed (block_mt -1: Movable taken).
    cdef Py_ssize_t z, b, nblocks = block_mt.shape[0]
    cdef int64_t li
    if p < 0 or o < 0 or o >= pindex.shape[1] or c >= ncpu:
        return -1
    if k == MM_PAGE_ALLOC or k == MM_PAGE_PCPU_DRAIN:
        delta[0] = -1
    elif k == MM_PAGE_FREE or (k == MM_PAGE_ALLOC_ZONE_LOCKED and refill == 1):
        delta[0] = 1
    else:
        return -1
    z = zone_of(p, zone_start, zone_end)
    if z < 0:
        return -1
    if k == MM_PAGE_FREE:
        b = p >> block_shift
        mt = block_mt[b if b < nblocks else nblocks - 1]
        guess[0] = mt < 0
    if mt < 0 or mt >= pindex.shape[0]:
        mt = movable
    li = pindex[mt, o]
    if li < 0:
        return -1
    return (z * ncpu + c) * nlists + li


cdef inline Py_ssize_t reveal(Py_ssize_t r, int64_t at, int64_t row, Py_ssize_t z, Py_ssize_t c, int64_t src,
                              int64_t dst, bint every, int64_t[:, ::1] out) noexcept nogil:
    out[r, 0], out[r, 1], out[r, 2], out[r, 3], out[r, 4], out[r, 5], out[r, 6] = at, 2 * row, z, c, src, dst, every
    return r + 1


def pcp_lists_add(const uint8_t[:] kind, const uint16_t[:] cpu, const int64_t[:] pfn, const int8_t[:] order,
                  const int8_t[:] migratetype, const int8_t[:] percpu_refill, const int64_t[::1] bulk_at,
                  const uint16_t[::1] bulk_cpu, const int64_t[::1] bulk_pfn, const int8_t[::1] bulk_mt,
                  const int64_t[::1] zone_start, const int64_t[::1] zone_end, const int8_t[::1] block_mt,
                  int block_shift, int movable, const int64_t[:, ::1] pindex, const int64_t[::1] list_pages,
                  const int64_t[::1] chain, int64_t[:, :, ::1] balance, int64_t[:, :, ::1] need,
                  int64_t[:, :, ::1] exact, int64_t[:, ::1] rest, int64_t[:, ::1] left, int64_t[::1] refilling,
                  int64_t[:, :, ::1] guessed, const uint8_t[::1] unplaced):
    """Take in a batch of events, in trace order, with the order-0 allocations the
    kernel did not trace (alloc_pages_bulk) merged in, and say where the pages each
    CPU's pcp held when the trace began show up (pcpemu.runs.kstate.PcpLists).

    Per (zone, cpu, list): the balance of blocks, the deepest dip (need) and, at the
    list's first moment known empty, what it held at the start (exact; -1 until
    then). An allocation or a drained block takes a block, a free (to the list of its
    pageblock's type, block_mt) or a refill block adds one. A list is known empty just
    before a refill, and just after a drain followed on its CPU by a drain from another
    list (free_pcppages_bulk empties a list before the next); so is every list of the
    zone it passed over, when the second list's pindex is the higher (its round robin
    skips only empty lists; a wrap is not read, since a drained page whose pageblock
    changed type names a list it was not on, and a wrong wrap would pass over them all).

    The starting pages wait on one list per (zone, cpu), rest (its pindex); left is
    how many of them the trace has not shown yet. A dip below a list's deepest takes
    a block of them (when left has it) and, on a list other than rest, reveals one: a
    block moves there. When rest is known empty, every page still on it moves to the
    first list of chain not yet known, which becomes rest. A reveal found at a drain
    goes before what set the drain off: the run of frees (and vmstat worker runs)
    on its CPU just before it (from the batch's start at most), since a free or a
    decay_pcp_high drains as it comes, before the drain's events.

    A list known empty that the trace still holds blocks on (at a refill after the
    one that told its start: rmqueue_bulk refills only an empty list) lost them to an
    allocation the kernel did not trace (alloc_pages_bulk, whose pages the trace
    never frees): its balance starts again from empty there. But as many of them as
    frees put there since the list was last known empty, of pages in pageblocks
    whose type no event showed (block_mt -1, taken for Movable: guessed), went to
    another list: they move to the Unmovable list of the order (which of the other
    two the trace cannot say; where it was seen, holdout set 13's mix, the frees'
    pageblocks that events named later were Unmovable, 5,212 of 5,214).

    The other way round, a traced allocation of a page no event had put on a pcp
    list (unplaced: none before it, or its last one put it in the buddy) that takes a
    list whose start is known below empty took a block that came onto it with no
    event (drained pages the kernel allocates again with no refill between): an
    arrival row, and the balance stays at empty. (A page a free put on another list
    than the one its pageblock's type names is no arrival.)

    :param bulk_at: the event index each untraced allocation goes before (len(kind):
        at the end), ascending; equal ones in the order given.
    :param bulk_cpu: its CPU; bulk_pfn: its page; bulk_mt: the list's migratetype.
    :param list_pages: pages per block of each pindex.
    :param refilling: per CPU, the key of the list a refill under way fills (-1:
        none), from batch to batch.
    :param guessed: per (zone, cpu, list), the guessed frees since it was last known
        empty, from batch to batch.
    :param unplaced: per event, as match gives it.
    :return: the reveals, one row each: the event index it goes before, its sort key
        (twice the merged row it precedes; an untraced allocation s is merged row
        bulk_at[s] + s), zone, cpu, the pindex it takes from and puts on, and 1 when
        it moves every page; and the untraced takes, one row each: the refill's event
        index, zone, cpu, pindex, the blocks the trace held there (below zero: it
        held fewer than none, a page it put on another list), of those the ones
        that moved to the Unmovable list, and 1; or an arrival's: the allocation's
        event index, zone, cpu, pindex, minus the blocks that came, 0 and 0.
    """
    cdef Py_ssize_t n = kind.shape[0], nbulk = bulk_at.shape[0], i, j = 0, s = 0, z, c, r = 0
    cdef Py_ssize_t ncpu = balance.shape[1], nlists = balance.shape[2]
    cdef int64_t li, before, run, b
    cdef int64_t[::1] key = np.full(n + nbulk, -1, np.int64)
    cdef int64_t[::1] at = np.zeros(n + nbulk, np.int64)
    cdef int64_t[::1] prev = np.full(ncpu, -1, np.int64)
    # Per CPU: the first row of the run of frees it is in (-1: none; 0 at the start,
    # since the run may have begun in the batch before), and the row the drain under
    # way goes back to.
    cdef int64_t[::1] frees_from = np.zeros(ncpu, np.int64)
    cdef int64_t[::1] drain_from = np.zeros(ncpu, np.int64)
    cdef int64_t[::1] last = np.full(ncpu, -1, np.int64)
    cdef int64_t at_row
    cdef uint8_t[::1] mkind = np.zeros(n + nbulk, np.uint8)
    cdef uint16_t[::1] mcpu = np.zeros(n + nbulk, np.uint16)
    cdef uint8_t[::1] emptied = np.zeros(n + nbulk, np.uint8)
    cdef int64_t[::1] passed_from = np.full(n + nbulk, -1, np.int64)   # a drain's list before it, same zone
    cdef int64_t skip
    cdef uint8_t[::1] untraced = np.zeros(n + nbulk, np.uint8)
    cdef int8_t[::1] delta = np.zeros(n + nbulk, np.int8)
    cdef uint8_t[::1] mguess = np.zeros(n + nbulk, np.uint8)
    cdef int64_t moved, unmovable
    # Rows written as found: a reveal per row at most, and a move of rest per list become known.
    out_arr = np.empty((2 * (n + nbulk) + exact.shape[0] * ncpu * nlists, 7), np.int64)
    cdef int64_t[:, ::1] out = out_arr
    taken_arr = np.empty((n, 7), np.int64)
    cdef int64_t[:, ::1] taken = taken_arr
    cdef Py_ssize_t t = 0
    cdef int64_t held
    if bulk_cpu.shape[0] != nbulk or bulk_pfn.shape[0] != nbulk or bulk_mt.shape[0] != nbulk:
        raise ValueError("the untraced allocations' arrays differ in length")
    if unplaced.shape[0] != n:
        raise ValueError(f"{n} events but {unplaced.shape[0]} unplaced flags")
    for s in range(nbulk):
        if not 0 <= bulk_at[s] <= n or (s and bulk_at[s] < bulk_at[s - 1]):
            raise ValueError(f"untraced allocation {s} goes before event {bulk_at[s]}: not ascending in 0..{n}")
    s = 0
    with nogil:
        # The merged stream: each row's kind, CPU and event index, the list it moves a
        # block on (key) and its delta.
        for i in range(n + 1):
            while s < nbulk and bulk_at[s] <= i:
                mkind[j], mcpu[j], at[j], untraced[j] = MM_PAGE_ALLOC, bulk_cpu[s], bulk_at[s], 1
                key[j] = list_key(MM_PAGE_ALLOC, bulk_cpu[s], bulk_pfn[s], 0, bulk_mt[s], -1, zone_start, zone_end,
                                  block_mt, block_shift, movable, pindex, ncpu, nlists, &delta[j], &mguess[j])
                s += 1
                j += 1
            if i == n:
                break
            mkind[j], mcpu[j], at[j] = kind[i], cpu[i], i
            key[j] = list_key(kind[i], cpu[i], pfn[i], order[i], migratetype[i], percpu_refill[i], zone_start,
                              zone_end, block_mt, block_shift, movable, pindex, ncpu, nlists, &delta[j], &mguess[j])
            j += 1
        # Drains whose next row on their CPU is a drain from another list.
        for i in range(n + nbulk):
            if mcpu[i] >= ncpu:
                continue
            b = prev[mcpu[i]]
            if b >= 0 and mkind[b] == MM_PAGE_PCPU_DRAIN and key[b] >= 0 and mkind[i] == MM_PAGE_PCPU_DRAIN \
                    and key[i] >= 0 and key[i] != key[b]:
                emptied[b] = 1
                if key[i] // nlists == key[b] // nlists and key[i] > key[b]:
                    passed_from[i] = key[b] % nlists
            prev[mcpu[i]] = i
        for i in range(n + nbulk):
            if mcpu[i] < ncpu:
                c = mcpu[i]
                if not untraced[i] and mkind[i] != MM_PAGE_ALLOC_ZONE_LOCKED and mkind[i] != MM_PAGE_ALLOC_EXTFRAG:
                    # A fallback's extfrag event is inside the refill; an untraced
                    # allocation placed among its blocks comes after it.
                    refilling[c] = -1
                if mkind[i] == MM_PAGE_FREE or mkind[i] == MM_PAGE_FREE_BATCHED or mkind[i] == VMSTAT_UPDATE:
                    if frees_from[c] < 0:
                        frees_from[c] = i
                elif mkind[i] == MM_PAGE_PCPU_DRAIN:
                    if frees_from[c] >= 0:
                        drain_from[c] = frees_from[c]
                    elif last[c] < 0 or mkind[last[c]] != MM_PAGE_PCPU_DRAIN:
                        drain_from[c] = i
                    frees_from[c] = -1
                else:
                    frees_from[c] = -1
                last[c] = i
            if key[i] < 0:
                continue
            z = key[i] // (ncpu * nlists)
            c = (key[i] // nlists) % ncpu
            li = key[i] % nlists
            at_row = drain_from[c] if mkind[i] == MM_PAGE_PCPU_DRAIN else i
            if passed_from[i] >= 0:
                for skip in range(passed_from[i] + 1, li):
                    if exact[z, c, skip] < 0:
                        exact[z, c, skip] = max(-balance[z, c, skip], 0)
                        r = move_rest_on(r, at[at_row], at_row, z, c, skip, chain, exact, rest, out)
            before = balance[z, c, li]
            if mkind[i] == MM_PAGE_ALLOC_ZONE_LOCKED and refilling[c] != key[i]:
                refilling[c] = key[i]
                if exact[z, c, li] >= 0:
                    held = exact[z, c, li] + before
                    if held != 0:
                        moved = min(max(held, 0), guessed[z, c, li])
                        unmovable = pindex[0, order_of(list_pages[li])]
                        if unmovable < 0 or unmovable == li:
                            moved = 0
                        taken[t, 0], taken[t, 1], taken[t, 2], taken[t, 3], taken[t, 4], taken[t, 5] = \
                            at[i], z, c, li, held, moved
                        taken[t, 6] = 1
                        t += 1
                        before -= held
                        if moved:
                            balance[z, c, unmovable] += moved
                guessed[z, c, li] = 0
            run = before + delta[i]
            if mkind[i] == MM_PAGE_ALLOC and not untraced[i] and unplaced[at[i]] and exact[z, c, li] >= 0 \
                    and exact[z, c, li] + run < 0:
                # An allocation off a list whose content is known, of more than its
                # events put there: a block came onto it with no event (pages a drain
                # left in the buddy, allocated again with no refill).
                taken[t, 0], taken[t, 1], taken[t, 2], taken[t, 3], taken[t, 4], taken[t, 5] = \
                    at[i], z, c, li, exact[z, c, li] + run, 0
                taken[t, 6] = 0
                t += 1
                run = -exact[z, c, li]
            balance[z, c, li] = run
            if mguess[i] and delta[i] > 0:
                guessed[z, c, li] += 1
            if exact[z, c, li] < 0 and mkind[i] == MM_PAGE_ALLOC_ZONE_LOCKED:
                exact[z, c, li] = max(-before, 0)
            elif -run > need[z, c, li]:
                need[z, c, li] = -run
                if left[z, c] >= list_pages[li]:
                    left[z, c] -= list_pages[li]
                    if li != rest[z, c]:
                        r = reveal(r, at[at_row], at_row, z, c, rest[z, c], li, False, out)
            if exact[z, c, li] < 0 and emptied[i]:
                exact[z, c, li] = max(-run, 0)
            r = move_rest_on(r, at[at_row], at_row, z, c, li, chain, exact, rest, out)
    return out_arr[:r], taken_arr[:t]


cdef inline int64_t order_of(int64_t pages) noexcept nogil:
    cdef int64_t o = 0
    while (1 << o) < pages:
        o += 1
    return o


cdef inline Py_ssize_t move_rest_on(Py_ssize_t r, int64_t at, int64_t row, Py_ssize_t z, Py_ssize_t c, int64_t li,
                                    const int64_t[::1] chain, const int64_t[:, :, ::1] exact,
                                    int64_t[:, ::1] rest, int64_t[:, ::1] out) noexcept nogil:
    # When list li is the waiting list (rest) and known empty, what is left on it goes
    # to the first list of chain not known yet, which becomes rest.
    cdef Py_ssize_t k
    if li != rest[z, c] or exact[z, c, li] < 0:
        return r
    for k in range(chain.shape[0]):
        if exact[z, c, chain[k]] < 0:
            rest[z, c] = chain[k]
            return reveal(r, at, row, z, c, li, chain[k], True, out)
    return r


# ---------------------------------------------------------------------------------------
# The starting state's free blocks of orders below a pageblock (pcpemu.runs.kstate._layout).

cdef struct Stack:
    int64_t *v
    Py_ssize_t n, cap


cdef int push(Stack *s, int64_t pfn) except -1 nogil:
    cdef int64_t *v
    if s.n == s.cap:
        v = <int64_t *>realloc(s.v, max(16, 2 * s.cap) * sizeof(int64_t))
        if v == NULL:
            with gil:
                raise MemoryError()
        s.v, s.cap = v, max(16, 2 * s.cap)
    s.v[s.n] = pfn
    s.n += 1
    return 0


def carve_free_blocks(const int64_t[::1] starts, const int64_t[::1] nr_free, int block_order,
                      int64_t[::1] pfns, int8_t[::1] orders):
    """Free blocks of orders block_order - 1 .. 0 carved from one migratetype's partly
    used pageblocks (starts: their first pfns, ascending), nr_free[order] of each, so that no two
    free buddies meet: a region split off as the buddy of a free block is tight (it
    must keep an allocated page) and is split only when no loose one is left; a
    partly used pageblock starts tight. Regions are taken last in, first out, the
    pageblocks lowest first.

    :param pfns: out, the blocks' first pfns; orders: out, their orders (room for
        sum(nr_free)).
    :return: (blocks placed, pages that found no room).
    """
    cdef Stack loose[32]
    cdef Stack tight[32]
    cdef Py_ssize_t i, got = 0, missed = 0, nb = starts.shape[0]
    cdef int order, k, j
    cdef int64_t pfn, want
    cdef Stack *pool
    if not 0 < block_order < 32 or nr_free.shape[0] < block_order:
        raise ValueError(f"block_order {block_order} with {nr_free.shape[0]} free counts")
    want = 0
    for order in range(block_order):
        want += nr_free[order]
    if pfns.shape[0] < want or orders.shape[0] < want:
        raise ValueError(f"room for {min(pfns.shape[0], orders.shape[0])} blocks, not {want}")
    memset(loose, 0, sizeof(loose))
    memset(tight, 0, sizeof(tight))
    try:
        for i in range(nb - 1, -1, -1):
            push(&tight[block_order], starts[i])
        with nogil:
            for order in range(block_order - 1, -1, -1):
                for i in range(nr_free[order]):
                    pool = NULL
                    if loose[order].n:
                        pool = &loose[order]
                    k = order + 1
                    while pool == NULL and k <= block_order:
                        if loose[k].n:
                            pool = &loose[k]
                        elif tight[k].n:
                            pool = &tight[k]
                        k += 1
                    if pool == NULL:
                        missed += (<Py_ssize_t>1) << order
                        continue
                    pool.n -= 1
                    pfn = pool.v[pool.n]
                    # Split down: the upper halves go back, the last one (the free
                    # block's buddy) tight.
                    for j in range(k - 2, order - 1, -1):
                        push(&tight[j] if j == order else &loose[j], pfn + ((<int64_t>1) << j))
                    pfns[got], orders[got] = pfn, order
                    got += 1
    finally:
        for k in range(32):
            free(loose[k].v)
            free(tight[k].v)
    return got, missed
