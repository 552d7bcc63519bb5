"""The C loops of a replay (pcpemu._replay) against small Python references, on random
event streams cut into random batches: the alloc/free matching with its slots and
vmstat worker runs, the per-CPU run figures, what each pcp list held at the start, the
refill runs alloc_factor is read from, and the frees that found the pcp locked."""

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pcpemu import _replay
from pcpemu.kernel.ftrace import (EVENT_DTYPE, MM_PAGE_ALLOC, MM_PAGE_ALLOC_EXTFRAG, MM_PAGE_ALLOC_ZONE_LOCKED,
                                  MM_PAGE_FREE, MM_PAGE_FREE_BATCHED, MM_PAGE_FREE_PCP_LOCKED, MM_PAGE_PCPU_DRAIN,
                                  VMSTAT_UPDATE, TraceEvent, write_ftrace)
from pcpemu.machine import OP_ALLOC, OP_DECAY, OP_FREE
from pcpemu.runs.replay import _EventFigures, _Matcher

KINDS = [MM_PAGE_ALLOC, MM_PAGE_FREE, MM_PAGE_FREE_BATCHED, MM_PAGE_PCPU_DRAIN, MM_PAGE_ALLOC_ZONE_LOCKED,
         MM_PAGE_ALLOC_EXTFRAG, VMSTAT_UPDATE]
NCPU = 2

# Mostly allocations and frees of few pfns and orders, so that frees find their allocations.
event = st.tuples(st.sampled_from(KINDS + [MM_PAGE_ALLOC, MM_PAGE_FREE] * 4), st.integers(0, NCPU - 1),
                  st.integers(-1, 12), st.integers(0, 1) | st.integers(0, 3), st.integers(-1, 4), st.integers(0, 1))


def _events(rows):
    ev = np.zeros(len(rows), EVENT_DTYPE)
    for i, (kind, cpu, pfn, order, mt, refill) in enumerate(rows):
        failed = kind == MM_PAGE_ALLOC and pfn < 0
        ev[i] = (kind, cpu, -1 if failed else max(pfn, 0) * 8, order, mt, 0x400 + order, 0.0, i + 1, -1, -1,
                 refill if kind == MM_PAGE_ALLOC_ZONE_LOCKED else -1, -1, 0)
    return ev


def _batches(rows, cuts):
    ev = _events(rows)
    edges = sorted({0, len(ev), *(c % (len(ev) + 1) for c in cuts)})
    return [ev[a:b] for a, b in zip(edges, edges[1:])]


class RefMatcher:
    """_Matcher in plain Python, event by event."""

    def __init__(self, untraced):
        self.untraced = untraced
        self.live = {}                  # pfn -> (slot, order) of a live traced allocation
        self.on_pcp = {}                # pfn -> the CPU of its last free (commit) or refill, since its last alloc or drain
        self.allocated = set()          # pfns whose last alloc or free was an alloc
        self.untracked = {}             # pfn -> no event yet, or the last was its drain (default True)
        self.pool, self.next = [], 0
        self.counts = dict.fromkeys(_replay.MATCH_COUNTS, 0)

    def take(self, n):
        got, self.pool = self.pool[:n], self.pool[n:]
        fresh = list(range(self.next, self.next + n - len(got)))
        self.next += len(fresh)
        return got + fresh

    def ops(self, ev, decay_pos, decay_cpu):
        slots = iter(self.take(sum(1 for e in ev if e["kind"] == MM_PAGE_ALLOC and e["pfn"] >= 0)))
        seen = {}                       # pfn -> ("alloc", slot, order) or ("free", event index) in this batch
        out, untraced = [], []
        self.pcp_owner, self.unplaced = [], []
        for i, e in enumerate(ev):
            kind, pfn, order = int(e["kind"]), int(e["pfn"]), int(e["order"])
            self.unplaced.append(int(kind == MM_PAGE_ALLOC and pfn >= 0 and self.untracked.get(pfn, True)))
            if pfn >= 0 and (kind in (MM_PAGE_PCPU_DRAIN, MM_PAGE_FREE, MM_PAGE_ALLOC)
                             or (kind == MM_PAGE_ALLOC_ZONE_LOCKED and e["percpu_refill"] == 1)):
                self.untracked[pfn] = kind == MM_PAGE_PCPU_DRAIN
            self.pcp_owner.append(self.on_pcp.pop(pfn, -1) if kind == MM_PAGE_PCPU_DRAIN else -1)
            if kind == MM_PAGE_PCPU_DRAIN and seen.get(pfn, ("none",))[0] == "free":
                seen[pfn] = ("free", -1)     # drained: no longer the free an allocation follows
            if kind == MM_PAGE_FREE or (kind == MM_PAGE_ALLOC_ZONE_LOCKED and e["percpu_refill"] == 1) \
                    or (kind == MM_PAGE_FREE_BATCHED and pfn >= 0 and pfn not in self.allocated):
                self.on_pcp[pfn] = int(e["cpu"])
            elif kind == MM_PAGE_ALLOC and pfn >= 0:
                self.on_pcp.pop(pfn, None)
            if kind == MM_PAGE_ALLOC and pfn >= 0:
                self.allocated.add(pfn)
            elif kind == MM_PAGE_FREE:
                self.allocated.discard(pfn)
            if kind == MM_PAGE_ALLOC and pfn < 0:
                self.counts["failed_alloc"] += 1
            elif kind == MM_PAGE_FREE_BATCHED:
                self.counts["free_batched"] += 1
            elif kind in (MM_PAGE_ALLOC, MM_PAGE_FREE):
                prev = seen.get(pfn) or (("alloc", *self.live[pfn]) if pfn in self.live else ("none",))
                if kind == MM_PAGE_ALLOC:
                    self.counts["missing_frees"] += prev[0] == "alloc"
                    s = next(slots)
                    seen[pfn] = ("alloc", s, order)
                    out.append([i, OP_ALLOC, order, int(e["cpu"]), int(e["gfp"]), s])
                    continue
                if prev[0] == "alloc" and prev[2] == order:
                    out.append([i, OP_FREE, order, int(e["cpu"]), int(e["gfp"]), prev[1]])
                elif prev[0] == "alloc":
                    self.counts["free_wrong_order"] += 1
                else:
                    self.counts["free_before_trace" if prev[0] == "none" else "free_untraced_alloc"] += 1
                    if self.untraced:
                        out.append([i, OP_FREE, order, int(e["cpu"]), int(e["gfp"]), None])
                        untraced.append((pfn, prev[1] if prev[0] == "free" else -1, out[-1]))
                seen[pfn] = ("free", i)
        for pfn, s in seen.items():
            if s[0] == "alloc":
                self.live[pfn] = s[1:]
            else:
                self.live.pop(pfn, None)
        self.untraced_ops = [op for _, _, op in untraced]
        self.prev_free = [at for _, at, _ in untraced]      # the same pfn's free before, in this batch
        for op, s in zip(self.untraced_ops, self.take(len(untraced))):
            op[5] = s
        self.pool += [op[5] for op in out if op[1] == OP_FREE]
        for pos, cpu in reversed(list(zip(decay_pos, decay_cpu))):
            at = next((j for j, op in enumerate(out) if op[0] >= pos), len(out))
            out.insert(at, [pos, OP_DECAY, 0, cpu, 0, 0])
        return out


@settings(max_examples=60, deadline=None)
@given(st.lists(event, min_size=30, max_size=80), st.lists(st.integers(0, 200), max_size=4), st.booleans(),
       st.lists(st.tuples(st.integers(0, 60), st.integers(0, NCPU - 1)), max_size=4))
def test_matching_gives_the_reference_ops_slots_and_counts(rows, cuts, untraced, decays):
    ref, got = RefMatcher(untraced), _Matcher(untraced)
    for ev in _batches(rows, cuts):
        dec = sorted((p % (len(ev) + 1), c) for p, c in decays)
        pos, cpus = np.array([d[0] for d in dec], np.int64), np.array([d[1] for d in dec], np.int64)
        ops, sel, upos, prev_free, unplaced, pcp_owner = got.ops(ev, (pos, cpus))
        want = ref.ops(ev, pos.tolist(), cpus.tolist())
        assert prev_free.tolist() == ref.prev_free
        assert pcp_owner.tolist() == ref.pcp_owner
        assert unplaced.tolist() == ref.unplaced
        assert [[int(s), int(o["op"]), int(o["order"]), int(o["cpu"]), int(o["gfp"]), int(o["slot"])]
                for s, o in zip(sel, ops)] == want
        assert upos.tolist() == [j for j, op in enumerate(want) if any(op is u for u in ref.untraced_ops)]
        assert got.pool.tolist() == ref.pool
    counts = ref.counts
    assert got.missing_frees == counts["missing_frees"]
    mine = {**got.skipped, **got.untraced_frees}
    assert {k: mine.get(k, 0) for k in counts if k != "missing_frees"} == \
        {k: v for k, v in counts.items() if k != "missing_frees"}
    assert not (untraced and got.skipped.get("free_before_trace"))


def test_an_allocation_of_a_page_no_event_put_on_a_pcp_list_is_unplaced():
    # Pages 1-5 allocated after: nothing (never seen), a drain, a refill, a free, a
    # free that found the pcp locked (in the buddy, as if drained); page 1 again after
    # its allocation and free. In a second batch page 2, drained in the first.
    A, D, R, F = MM_PAGE_ALLOC, MM_PAGE_PCPU_DRAIN, MM_PAGE_ALLOC_ZONE_LOCKED, MM_PAGE_FREE
    rows = [(D, 0, 2, 0, 1, 0), (R, 0, 3, 0, 1, 1), (F, 0, 4, 0, 1, 0), (F, 0, 5, 0, 1, 0),
            (A, 0, 1, 0, 1, 0), (A, 0, 2, 0, 1, 0), (A, 0, 3, 0, 1, 0), (A, 0, 4, 0, 1, 0), (A, 0, 5, 0, 1, 0),
            (F, 0, 1, 0, 1, 0), (A, 0, 1, 0, 1, 0), (D, 1, 6, 0, 1, 0)]
    ev = _events(rows)
    ev["kind"][3] = MM_PAGE_FREE_PCP_LOCKED
    m = _Matcher(untraced=True)
    *_, unplaced, _ = m.ops(ev)
    assert np.flatnonzero(unplaced).tolist() == [4, 5, 8]
    later = _events([(A, 1, 6, 0, 1, 0), (A, 1, 7, 0, 1, 0), (A, 1, 2, 0, 1, 0)])
    *_, unplaced, _ = m.ops(later)
    assert unplaced.tolist() == [1, 1, 0]       # page 2 was allocated since its drain


def _ref_figures(batches, ops, pcp_orders):
    # Per CPU, in event order: a run of refills (or drains) is one call; any other
    # event on the CPU, or another op, ends it; extfrag does not.
    blocks = np.zeros((NCPU, 11), np.int64)
    acc = {k: [0] * NCPU for k in _replay.FIGURE_COUNTS}
    last = {c: (0, -1) for c in range(NCPU)}
    for ev, op in zip(batches, ops):
        for i, e in enumerate(ev):
            kind, c, order = int(e["kind"]), int(e["cpu"]), int(e["order"])
            if kind == MM_PAGE_ALLOC_EXTFRAG:
                acc["fallbacks"][c] += 1
                continue
            run = 0
            if kind == MM_PAGE_ALLOC_ZONE_LOCKED and e["percpu_refill"] == 1:
                blocks[c, order] += 1
                run = 1
            elif kind == MM_PAGE_ALLOC_ZONE_LOCKED:
                acc["buddy_allocs"][c] += 1
            elif kind == MM_PAGE_PCPU_DRAIN:
                acc["drained_pages"][c] += 1 << order
                run = 2
            elif kind == MM_PAGE_FREE and not pcp_orders[order]:
                acc["nonpcp_frees"][c] += 1
            this = (run, -1 if op is None else int(op[i]))
            if run and this != last[c]:
                acc["refill_calls" if run == 1 else "drain_calls"][c] += 1
            last[c] = this
    return blocks, acc


@settings(max_examples=60, deadline=None)
@given(st.lists(event, min_size=30, max_size=80), st.lists(st.integers(0, 200), max_size=4), st.booleans(),
       st.lists(st.integers(0, 3), min_size=80, max_size=80))
def test_figures_count_runs_as_the_reference(rows, cuts, with_ops, op_of):
    pcp_orders = np.array([o <= 3 or o == 9 for o in range(11)])
    batches = _batches(rows, cuts)
    ops = [np.cumsum(op_of[: len(ev)]).astype(np.int64) if with_ops else None for ev in batches]
    fig = _EventFigures(NCPU, pcp_orders)
    for ev, op in zip(batches, ops):
        fig.add(ev, op)
    blocks, acc = _ref_figures(batches, ops, pcp_orders)
    assert (fig.blocks == blocks).all()
    assert {k: v.tolist() for k, v in fig.acc.items()} == acc


def _ref_pcp_lists(batches, starts, ends, block_mt, shift, pindex, shape, list_pages, chain, left):
    # PcpLists.reveals event by event: per (zone, cpu, list) the balance, the deepest
    # dip, and what it held at the start, known at a refill (just before) or at a drain
    # that the next event on its CPU, a drain from another list, shows emptied (just
    # after), as it shows every list of the zone it passed over to a higher pindex; and
    # the reveals: a new dip on a list other than the waiting one (rest)
    # while left has a block, and everything on rest once it is known; one found at a
    # drain goes before the frees (and vmstat runs) on its CPU that led up to the drain
    # run, from the batch's start at most. And the untraced takes: at the first block
    # of a refill (a fallback's extfrag event and an untraced allocation inside a
    # refill run do not end it, across batches too) of a list whose start is known,
    # what the balance says it held, which then starts from empty; of that, up to the
    # frees of pageblocks of no type shown (block_mt -1) since the refill before move
    # to the Unmovable list of the order. And the arrivals: a traced allocation of an
    # unplaced page that takes a list whose start is known below empty.
    bal, need, exact = (np.zeros(shape, np.int64), np.zeros(shape, np.int64), np.full(shape, -1, np.int64))
    rest = np.full(shape[:2], chain[0], np.int64)
    refilling = {}
    guessed = np.zeros(shape, np.int64)
    out, takes = [], []
    for ev, at, untraced, unplaced in batches:
        keys = []
        for e in ev:
            kind, pfn, order, cpu = int(e["kind"]), int(e["pfn"]), int(e["order"]), int(e["cpu"])
            refill = kind == MM_PAGE_ALLOC_ZONE_LOCKED and e["percpu_refill"] == 1
            delta = {MM_PAGE_ALLOC: -1, MM_PAGE_FREE: 1, MM_PAGE_PCPU_DRAIN: -1}.get(kind, 1 if refill else 0)
            zone = [z for z in range(len(starts)) if starts[z] <= pfn < ends[z]]
            mt = int(block_mt[min(pfn >> shift, len(block_mt) - 1)]) if kind == MM_PAGE_FREE else int(e["migratetype"])
            guess = kind == MM_PAGE_FREE and mt < 0
            mt = mt if 0 <= mt <= 2 else 1
            li = pindex[mt][order] if 0 <= order < pindex.shape[1] else -1
            ok = delta and zone and li >= 0 and pfn >= 0
            keys.append((zone[0], cpu, li, delta, refill, guess) if ok else None)
        rows, taken = [], []
        for i, k in enumerate(keys):
            if not untraced[i] and ev[i]["kind"] not in (MM_PAGE_ALLOC_ZONE_LOCKED, MM_PAGE_ALLOC_EXTFRAG):
                refilling.pop(int(ev[i]["cpu"]), None)
            if k is None:
                continue
            z, c, li, delta, refill, guess = k
            at_row = i
            if ev[i]["kind"] == MM_PAGE_PCPU_DRAIN:
                mine = [j for j in range(i + 1) if ev[j]["cpu"] == c]
                while len(mine) > 1 and ev[mine[-2]]["kind"] == MM_PAGE_PCPU_DRAIN:
                    mine.pop()                  # back to the drain run's first row
                at_row = mine.pop()
                while mine and ev[mine[-1]]["kind"] in (MM_PAGE_FREE, MM_PAGE_FREE_BATCHED, VMSTAT_UPDATE):
                    at_row = mine.pop()         # and over the frees that led up to it
                at_row = at_row if mine else 0
            nxt = next((j for j in range(i + 1, len(ev)) if ev[j]["cpu"] == c), None)
            emptied = (ev[i]["kind"] == MM_PAGE_PCPU_DRAIN and nxt is not None and keys[nxt] is not None
                       and ev[nxt]["kind"] == MM_PAGE_PCPU_DRAIN and keys[nxt][:3] != k[:3])
            prv = next((j for j in range(i - 1, -1, -1) if ev[j]["cpu"] == c), None)
            if ev[i]["kind"] == MM_PAGE_PCPU_DRAIN and prv is not None and keys[prv] is not None \
                    and ev[prv]["kind"] == MM_PAGE_PCPU_DRAIN and keys[prv][:2] == (z, c) and keys[prv][2] < li:
                for skip in range(keys[prv][2] + 1, li):
                    if exact[z, c, skip] < 0:
                        exact[z, c, skip] = max(-bal[z, c, skip], 0)
                        _ref_move_rest(rows, at[at_row], at_row, z, c, skip, chain, exact, rest)
            before = bal[z, c, li]
            if refill and refilling.get(c) != (z, li):
                refilling[c] = (z, li)
                if exact[z, c, li] >= 0 and exact[z, c, li] + before:
                    held = exact[z, c, li] + before
                    unmovable = pindex[0][int(list_pages[li]).bit_length() - 1]
                    moved = min(max(held, 0), guessed[z, c, li]) if 0 <= unmovable != li else 0
                    taken.append((at[i], z, c, li, held, moved, 1))
                    before = bal[z, c, li] = -exact[z, c, li]
                    bal[z, c, unmovable] += moved
                guessed[z, c, li] = 0
            bal[z, c, li] += delta
            if ev[i]["kind"] == MM_PAGE_ALLOC and not untraced[i] and unplaced[at[i]] and exact[z, c, li] >= 0 \
                    and exact[z, c, li] + bal[z, c, li] < 0:
                taken.append((at[i], z, c, li, exact[z, c, li] + bal[z, c, li], 0, 0))
                bal[z, c, li] = -exact[z, c, li]
            guessed[z, c, li] += guess
            if exact[z, c, li] < 0 and refill:
                exact[z, c, li] = max(-before, 0)
            elif -bal[z, c, li] > need[z, c, li]:
                need[z, c, li] = -bal[z, c, li]
                if left[z, c] >= list_pages[li]:
                    left[z, c] -= list_pages[li]
                    if li != rest[z, c]:
                        rows.append((at[at_row], 2 * at_row, z, c, rest[z, c], li, 0))
            if exact[z, c, li] < 0 and emptied:
                exact[z, c, li] = max(-bal[z, c, li], 0)
            _ref_move_rest(rows, at[at_row], at_row, z, c, li, chain, exact, rest)
        out.append(np.array(rows, np.int64).reshape(-1, 7))
        takes.append(np.array(taken, np.int64).reshape(-1, 7))
    return bal, need, exact, out, takes


def _ref_move_rest(rows, at, row, z, c, li, chain, exact, rest):
    # rest known empty: what is left on it moves to the first list of chain not known.
    if li == rest[z, c] and exact[z, c, li] >= 0:
        nxt_rest = [k for k in chain if exact[z, c, k] < 0]
        if nxt_rest:
            rows.append((at, 2 * row, z, c, li, nxt_rest[0], 1))
            rest[z, c] = nxt_rest[0]


# An untraced (bulk) allocation: the event index it goes before (taken modulo the
# batch's length + 1), cpu, pfn, the list's migratetype.
bulk_alloc = st.tuples(st.integers(0, 200), st.integers(0, NCPU - 1), st.integers(-1, 12), st.integers(-1, 4))


def _bulk(ev, allocs):
    # The allocations as pcp_lists_add takes them, and the batch with them put in as
    # mm_page_alloc rows (what the reference reads).
    at = np.array([a % (len(ev) + 1) for a, *_ in allocs], np.int64)
    o = np.argsort(at, kind="stable")
    at = at[o]
    cpu = np.array([c for _, c, _, _ in allocs], np.uint16)[o]
    pfn = np.array([max(p, 0) * 8 for _, _, p, _ in allocs], np.int64)[o]
    mt = np.array([t for *_, t in allocs], np.int8)[o]
    rows = np.zeros(len(at), EVENT_DTYPE)
    rows["kind"], rows["cpu"], rows["pfn"], rows["migratetype"] = MM_PAGE_ALLOC, cpu, pfn, mt
    return (at, cpu, pfn, mt), (np.insert(ev, at, rows), np.insert(np.arange(len(ev)), at, at),
                                np.insert(np.zeros(len(ev), bool), at, True))


@settings(max_examples=60, deadline=None)
@given(st.lists(event, min_size=30, max_size=80), st.lists(st.integers(0, 200), max_size=4),
       st.lists(st.integers(-1, 4), min_size=1, max_size=4), st.lists(bulk_alloc, max_size=12),
       st.lists(st.integers(0, 12), min_size=2 * NCPU, max_size=2 * NCPU))
def test_pcp_lists_add_holds_as_the_reference(rows, cuts, block_types, allocs, seeded):
    starts, ends = np.array([0, 40], np.int64), np.array([40, 90], np.int64)
    block_mt = np.array(block_types, np.int8)
    pindex = np.array([[o if o < 4 else -1 for o in range(11)], [4 + o if o < 2 else -1 for o in range(11)],
                       [6] * 11], np.int64)
    list_pages = np.array([1, 2, 4, 8, 1, 2, 1], np.int64)
    chain = np.array([4, 6, 0], np.int64)
    shape = (2, NCPU, 7)
    batches = _batches(rows, cuts)
    bal, need, exact = (np.zeros(shape, np.int64), np.zeros(shape, np.int64), np.full(shape, -1, np.int64))
    left = np.array(seeded, np.int64).reshape(2, NCPU)
    rest = np.full((2, NCPU), chain[0], np.int64)
    refilling = np.full(NCPU, -1, np.int64)
    guessed = np.zeros(shape, np.int64)
    want_left = left.copy()
    merged, got = [], []
    for k, ev in enumerate(batches):
        bulk, with_bulk = _bulk(ev, allocs[k::len(batches)])
        unplaced = (ev["pfn"] // 8 % 3 == 0).astype(np.uint8)      # as match would say, any pattern
        merged.append((*with_bulk, unplaced))
        got.append(_replay.pcp_lists_add(ev["kind"], ev["cpu"], ev["pfn"], ev["order"], ev["migratetype"],
                                         ev["percpu_refill"], *bulk, starts, ends, block_mt, 5, 1, pindex, list_pages,
                                         chain, bal, need, exact, rest, left, refilling, guessed, unplaced))
    want = _ref_pcp_lists(merged, starts, ends, block_mt, 5, pindex, shape, list_pages, chain, want_left)
    assert (bal == want[0]).all() and (need == want[1]).all() and (exact == want[2]).all()
    assert (left == want_left).all()
    for (reveals, taken), want_reveals, want_taken in zip(got, want[3], want[4]):
        assert reveals.tolist() == want_reveals.tolist()
        assert taken.tolist() == want_taken.tolist()


def test_a_reveal_at_a_drain_goes_before_the_frees_that_set_it_off():
    # CPU 0: an allocation, then frees and a vmstat worker run (CPU 1's event between
    # them is not CPU 0's), then a drain from a list the trace had not shown: its
    # reveal goes before the first free after the allocation, where the emulator's
    # own drain may already come.
    rows = [(MM_PAGE_ALLOC, 0, 1, 0, 1, 0), (MM_PAGE_FREE, 0, 2, 0, 1, 0), (MM_PAGE_ALLOC, 1, 4, 0, 1, 0),
            (VMSTAT_UPDATE, 0, 0, 0, -1, 0), (MM_PAGE_FREE, 0, 2, 0, 1, 0), (MM_PAGE_PCPU_DRAIN, 0, 3, 0, 0, 0)]
    ev = _events(rows)
    starts, ends = np.array([0, 40], np.int64), np.array([40, 90], np.int64)
    pindex = np.array([[o if o < 4 else -1 for o in range(11)], [4 + o if o < 2 else -1 for o in range(11)],
                       [6] * 11], np.int64)
    shape = (2, NCPU, 7)
    state = [np.zeros(shape, np.int64), np.zeros(shape, np.int64), np.full(shape, -1, np.int64),
             np.full((2, NCPU), 4, np.int64), np.full((2, NCPU), 5, np.int64), np.full(NCPU, -1, np.int64),
             np.zeros(shape, np.int64)]
    none = (np.zeros(0, np.int64), np.zeros(0, np.uint16), np.zeros(0, np.int64), np.zeros(0, np.int8))
    got = _replay.pcp_lists_add(ev["kind"], ev["cpu"], ev["pfn"], ev["order"], ev["migratetype"],
                                ev["percpu_refill"], *none, starts, ends, np.array([1], np.int8), 5, 1, pindex,
                                np.array([1, 2, 4, 8, 1, 2, 1], np.int64), np.array([4, 6, 0], np.int64), *state,
                                np.zeros(len(ev), np.uint8))
    # at event 1 (merged row 1), zone 0, CPU 0, from the waiting list 4 to list 0
    assert got[0].tolist() == [[1, 2, 0, 0, 4, 0, 0]]


def test_a_drain_shows_the_lists_it_passed_over_empty():
    # free_pcppages_bulk takes the lists in pindex order, round robin, skipping empty
    # ones: a drain from list 2 then from list 5 (of one zone and CPU) shows 2 emptied
    # and 3 and 4 empty; 4 is the waiting list, so its pages move on to the chain's
    # next unknown list, 6.
    D = MM_PAGE_PCPU_DRAIN
    ev = _events([(D, 0, 1, 2, 0, 0), (D, 0, 2, 1, 1, 0)])
    pindex = np.array([[o if o < 4 else -1 for o in range(11)], [4 + o if o < 2 else -1 for o in range(11)],
                       [6] * 11], np.int64)
    state = [np.zeros((2, NCPU, 7), np.int64), np.zeros((2, NCPU, 7), np.int64), np.full((2, NCPU, 7), -1, np.int64),
             np.full((2, NCPU), 4, np.int64), np.full((2, NCPU), 5, np.int64), np.full(NCPU, -1, np.int64),
             np.zeros((2, NCPU, 7), np.int64)]
    none = (np.zeros(0, np.int64), np.zeros(0, np.uint16), np.zeros(0, np.int64), np.zeros(0, np.int8))
    got = _replay.pcp_lists_add(ev["kind"], ev["cpu"], ev["pfn"], ev["order"], ev["migratetype"],
                                ev["percpu_refill"], *none, np.array([0, 40], np.int64), np.array([40, 90], np.int64),
                                np.array([1], np.int8), 5, 1, pindex, np.array([1, 2, 4, 8, 1, 2, 1], np.int64),
                                np.array([4, 6, 0], np.int64), *state, np.zeros(len(ev), np.uint8))
    # list 2's block revealed from the waiting list, then the waiting list moved on
    assert got[0].tolist() == [[0, 0, 0, 0, 4, 2, 0], [0, 0, 0, 0, 4, 6, 1]]
    assert state[2][0, 0].tolist() == [-1, -1, 1, 0, 0, -1, -1] and state[3][0, 0] == 6


def _lists_state():
    return [np.zeros((1, NCPU, 7), np.int64), np.zeros((1, NCPU, 7), np.int64), np.full((1, NCPU, 7), -1, np.int64),
            np.full((1, NCPU), 4, np.int64), np.zeros((1, NCPU), np.int64), np.full(NCPU, -1, np.int64),
            np.zeros((1, NCPU, 7), np.int64)]


def test_a_refill_of_a_list_the_trace_still_holds_pages_on_is_an_untraced_take():
    # CPU 0's Movable order-0 list (pindex 0 here, pfns in zone 0, block type Movable):
    # a refill tells its start (empty), two frees put pages on it, one allocation takes
    # one; the next refill shows it empty, so one page left with no event. A refill run
    # goes on through a fallback's extfrag event, an untraced allocation placed inside
    # it, and a batch boundary, and a refill of another CPU or list starts no run here.
    R, A, F, X = MM_PAGE_ALLOC_ZONE_LOCKED, MM_PAGE_ALLOC, MM_PAGE_FREE, MM_PAGE_ALLOC_EXTFRAG
    rows = [(R, 0, 1, 0, 1, 1), (A, 0, 1, 0, 1, 0),                      # 0-1: refill, allocation
            (F, 0, 2, 0, 1, 0), (F, 0, 3, 0, 1, 0), (A, 0, 2, 0, 1, 0),  # 2-4: one page stays
            (R, 1, 4, 0, 1, 1),                                          # 5: CPU 1
            (R, 0, 5, 0, 1, 1), (X, 0, 5, 0, 1, 0), (R, 0, 6, 0, 1, 1),  # 6-8: held 1; the run goes on
            (R, 0, 7, 0, 1, 1), (A, 0, 5, 0, 1, 0)]                      # 9 (next batch), 10
    ev = _events(rows)
    pindex = np.array([[-1] * 11, [0] + [-1] * 10, [-1] * 11], np.int64)
    state = _lists_state()
    bulk = (np.array([9], np.int64), np.zeros(1, np.uint16), np.array([8], np.int64), np.ones(1, np.int8))
    none = (np.zeros(0, np.int64), np.zeros(0, np.uint16), np.zeros(0, np.int64), np.zeros(0, np.int8))
    args = (np.array([0], np.int64), np.array([90], np.int64), np.array([1], np.int8), 5, 1, pindex,
            np.ones(7, np.int64), np.array([4, 6, 0], np.int64))
    taken = []
    for part, untraced in ((ev[:9], bulk), (ev[9:], none)):
        cols = (part["kind"], part["cpu"], part["pfn"], part["order"], part["migratetype"], part["percpu_refill"])
        taken.append(_replay.pcp_lists_add(*cols, *untraced, *args, *state, np.zeros(len(part), np.uint8))[1].tolist())
    # event 6, zone 0, CPU 0, pindex 0: one block (at a refill); nothing in the second batch
    assert taken == [[[6, 0, 0, 0, 1, 0, 1]], []]     # its pageblock's type shown: none moved
    # four blocks refilled and two freed, four allocated (one untraced) and one taken: one left
    assert state[0][0, 0, 0] == 1 and state[2][0, 0, 0] == 0


def test_frees_of_pageblocks_of_no_type_shown_that_a_refill_finds_gone_move_to_unmovable():
    # CPU 0's Movable order-0 list (pindex 0; Unmovable order 0 is pindex 1): a refill
    # tells its start, an allocation takes its block, then two frees of pages in a
    # pageblock no event showed (block_mt -1, taken for Movable) and one of a shown
    # one; the next refill shows the list empty. The three it held went elsewhere:
    # the two guessed to the Unmovable list, the third to an untraced allocation.
    R, A, F = MM_PAGE_ALLOC_ZONE_LOCKED, MM_PAGE_ALLOC, MM_PAGE_FREE
    ev = _events([(R, 0, 1, 0, 1, 1), (A, 0, 1, 0, 1, 0), (F, 0, 2, 0, 1, 0), (F, 0, 3, 0, 1, 0),
                  (F, 0, 70, 0, 1, 0), (R, 0, 5, 0, 1, 1)])
    pindex = np.array([[1] + [-1] * 10, [0] + [-1] * 10, [-1] * 11], np.int64)
    block_mt = np.array([-1, 1], np.int8)          # pfns 16 and 24 in block 0, 560 in block 1 (shift 9)
    state = _lists_state()
    none = (np.zeros(0, np.int64), np.zeros(0, np.uint16), np.zeros(0, np.int64), np.zeros(0, np.int8))
    got = _replay.pcp_lists_add(ev["kind"], ev["cpu"], ev["pfn"], ev["order"], ev["migratetype"],
                                ev["percpu_refill"], *none, np.array([0], np.int64), np.array([1 << 20], np.int64),
                                block_mt, 9, 1, pindex, np.ones(7, np.int64), np.array([0, 1], np.int64), *state,
                                np.zeros(len(ev), np.uint8))
    assert got[1].tolist() == [[5, 0, 0, 0, 3, 2, 1]]   # event 5: held 3, of which 2 moved
    assert state[0][0, 0, :2].tolist() == [1, 2]      # the new refill's block; the two moved


def test_an_allocation_of_an_unplaced_page_off_a_list_shown_empty_is_an_arrival():
    # CPU 0's Movable order-0 list (pindex 0): a refill tells its start (empty) and an
    # allocation takes its block. The next allocation finds it empty by the trace: of
    # a page no event put on a pcp list (a drained one, allocated again with no
    # refill), a block came with no event; of a page a free put on another list (its
    # pageblock's type named this one), none. The balance stays at empty either way
    # but the second.
    R, A = MM_PAGE_ALLOC_ZONE_LOCKED, MM_PAGE_ALLOC
    ev = _events([(R, 0, 1, 0, 1, 1), (A, 0, 1, 0, 1, 0), (A, 0, 2, 0, 1, 0), (A, 0, 3, 0, 1, 0)])
    pindex = np.array([[-1] * 11, [0] + [-1] * 10, [-1] * 11], np.int64)
    state = _lists_state()
    none = (np.zeros(0, np.int64), np.zeros(0, np.uint16), np.zeros(0, np.int64), np.zeros(0, np.int8))
    got = _replay.pcp_lists_add(ev["kind"], ev["cpu"], ev["pfn"], ev["order"], ev["migratetype"],
                                ev["percpu_refill"], *none, np.array([0], np.int64), np.array([90], np.int64),
                                np.array([1], np.int8), 5, 1, pindex, np.ones(7, np.int64), np.array([4, 6, 0], np.int64),
                                *state, np.array([0, 0, 1, 0], np.uint8))
    assert got[1].tolist() == [[2, 0, 0, 0, -1, 0, 0]]     # event 2: one block came
    assert state[2][0, 0, 0] == 0 and state[0][0, 0, 0] == -1


def test_pcp_lists_add_refuses_untraced_allocations_out_of_order():
    ev = _events([(MM_PAGE_ALLOC, 0, 1, 0, 1, 0)] * 3)
    args = (np.zeros(1, np.int64), np.ones(1, np.int64), np.zeros(1, np.int8), 5, 1, np.zeros((3, 11), np.int64),
            np.ones(1, np.int64), np.zeros(1, np.int64), *(np.zeros((1, NCPU, 1), np.int64) for _ in range(3)),
            *(np.zeros((1, NCPU), np.int64) for _ in range(2)), np.full(NCPU, -1, np.int64),
            np.zeros((1, NCPU, 1), np.int64))
    cols = (ev["kind"], ev["cpu"], ev["pfn"], ev["order"], ev["migratetype"], ev["percpu_refill"])
    one = (np.zeros(2, np.uint16), np.zeros(2, np.int64), np.zeros(2, np.int8))
    for at in ([2, 1], [0, 4]):
        with pytest.raises(ValueError, match="not ascending"):
            _replay.pcp_lists_add(*cols, np.array(at, np.int64), *one, *args, np.zeros(len(ev), np.uint8))


@settings(max_examples=60, deadline=None)
@given(st.lists(event, min_size=30, max_size=80), st.integers(1, 100))
def test_block_types_are_the_last_shown(rows, end_pfn):
    ev = _events(rows)
    got = np.full((100 >> 3) + 1, 1, np.int8)
    _replay.learn_block_types(ev["kind"], ev["pfn"], ev["migratetype"], got, end_pfn, 3, 1)
    want = np.full((100 >> 3) + 1, 1, np.int8)
    for e in ev:
        if e["kind"] in (MM_PAGE_ALLOC, MM_PAGE_ALLOC_ZONE_LOCKED, MM_PAGE_PCPU_DRAIN) and \
                0 <= e["pfn"] < end_pfn and e["migratetype"] >= 0:
            want[e["pfn"] >> 3] = e["migratetype"] if e["migratetype"] < 3 else 1
    assert (got == want).all()


def test_pcp_count_moves_by_hand():
    # Zone 0 is pfns [0, 64), zone 1 [64, 128); orders 0-3 and 9 have pcp lists.
    rows = [(MM_PAGE_ALLOC_ZONE_LOCKED, 0, 1, 0, 1, 1)] * 3 + [   # a refill of 3 blocks: +3
        (MM_PAGE_ALLOC, 0, 1, 0, 1, 0),                             # from the list: -1
        (MM_PAGE_ALLOC_ZONE_LOCKED, 0, 2, 1, 1, 0),                 # rmqueue_buddy, order 1 ...
        (MM_PAGE_ALLOC, 0, 2, 1, 1, 0),                             # ... its allocation: 0
        (MM_PAGE_FREE, 0, 3, 2, 1, 0),                              # order 2 to the list: +4
        (MM_PAGE_FREE_BATCHED, 0, 3, 2, 1, 0),                      # the same free again: 0
        (MM_PAGE_FREE, 0, 4, 4, 1, 0),                              # order 4, no pcp list: 0
        (MM_PAGE_PCPU_DRAIN, 0, 5, 0, 1, 0),                        # -1
        (MM_PAGE_ALLOC_EXTFRAG, 0, 5, 0, 1, 0),                     # 0
        (MM_PAGE_FREE, 1, 9, 0, 1, 0),                              # zone 1, cpu 1: +1
        (MM_PAGE_PCPU_DRAIN, 1, 20, 3, 1, 0),                       # past both zones: 0
        (MM_PAGE_ALLOC, 1, -1, 0, 1, 0),                            # failed: 0
    ]
    ev = _events(rows)
    moved = np.zeros((2, NCPU), np.int64)
    orders = np.array([o <= 3 or o == 9 for o in range(11)], np.uint8)
    _replay.pcp_count_moves(ev["kind"], ev["cpu"], ev["pfn"], ev["order"], ev["percpu_refill"], orders,
                            np.array([0, 64], np.int64), np.array([64, 128], np.int64), moved)
    assert moved.tolist() == [[3 - 1 + 4 - 1, 0], [0, 1]]


@settings(max_examples=80, deadline=None)
@given(st.lists(event, min_size=1, max_size=80), st.integers(1, 100))
def test_pcp_count_moves_is_the_sum_of_each_events_move(rows, split):
    ev = _events(rows)
    orders = np.array([o <= 2 for o in range(11)], np.uint8)
    starts, ends = np.array([0, split], np.int64), np.array([split, 100], np.int64)
    got = np.zeros((2, NCPU), np.int64)
    for a, b in ((0, len(ev) // 2), (len(ev) // 2, len(ev))):      # batches add up
        e = ev[a:b]
        _replay.pcp_count_moves(e["kind"], e["cpu"], e["pfn"], e["order"], e["percpu_refill"], orders, starts,
                                ends, got)
    want = np.zeros((2, NCPU), np.int64)
    for e in ev:
        kind, pfn, order = int(e["kind"]), int(e["pfn"]), int(e["order"])
        if pfn < 0 or pfn >= 100 or order < 0:
            continue
        sign = {MM_PAGE_PCPU_DRAIN: -1}.get(kind, 0) if not orders[order] else \
            {MM_PAGE_FREE: 1, MM_PAGE_ALLOC_ZONE_LOCKED: 1, MM_PAGE_ALLOC: -1, MM_PAGE_PCPU_DRAIN: -1}.get(kind, 0)
        want[int(pfn >= split), int(e["cpu"])] += sign << order
    assert (got == want).all()


def _ref_refill_runs(ev, orders, split):
    # AllocFactorRefills' runs in plain Python, the whole stream at once: per CPU, its
    # order-0 percpu_refill=1 blocks of one zone back to back (extfrag events pass),
    # each with the pcp frees of that (zone, CPU) since the run there before.
    zone = lambda pfn: -1 if pfn < 0 or pfn >= 100 else int(pfn >= split)        # noqa: E731
    run, frees, out = {}, np.zeros((2, NCPU), np.int64), []
    for i, e in enumerate(ev):
        kind, c, z, order = int(e["kind"]), int(e["cpu"]), zone(int(e["pfn"])), int(e["order"])
        if kind == MM_PAGE_ALLOC_EXTFRAG:
            continue
        if kind == MM_PAGE_ALLOC_ZONE_LOCKED and e["percpu_refill"] == 1 and order == 0 and z >= 0:
            if c in run and run[c][0] == z:
                run[c][1] += 1
                continue
            if c in run:
                rz, blocks, at = run.pop(c)
                out.append((at, c, rz, blocks, int(frees[rz, c])))
                frees[rz, c] = 0
            run[c] = [z, 1, i]
            continue
        if c in run:
            rz, blocks, at = run.pop(c)
            out.append((at, c, rz, blocks, int(frees[rz, c])))
            frees[rz, c] = 0
        if kind == MM_PAGE_FREE and z >= 0 and order >= 0 and orders[order]:
            frees[z, c] += 1
    return out


@settings(max_examples=80, deadline=None)
@given(st.lists(event, min_size=1, max_size=80), st.integers(1, 99), st.lists(st.integers(0, 80), max_size=4))
def test_refill_runs_are_the_reference_across_batches(rows, split, cuts):
    # A run a batch ends goes on in the next; its row, found there, gives the index of
    # the event it began at as that of the batch it ended in (0).
    orders = np.array([o <= 2 for o in range(11)], np.uint8)
    starts, ends = np.array([0, split], np.int64), np.array([split, 100], np.int64)
    frees, run = np.zeros((2, NCPU), np.int64), np.full((NCPU, 3), -1, np.int64)
    got, base = [], 0
    for e in _batches(rows, cuts):
        out = np.empty((len(e), 5), np.int64)
        n = _replay.refill_runs(e["kind"], e["cpu"], e["pfn"], e["order"], e["percpu_refill"], orders, starts, ends,
                                frees, run, out)
        got += [(at + base if at or base == 0 else None, *rest) for at, *rest in out[:n].tolist()]
        base += len(e)
    want = _ref_refill_runs(np.concatenate(_batches(rows, cuts)), orders, split)
    assert [r[1:] for r in got] == [r[1:] for r in want]
    assert all(g[0] is None or g[0] == w[0] for g, w in zip(got, want))


def _zone(pfn, starts, ends):
    inside = [z for z, (a, b) in enumerate(zip(starts, ends)) if a <= pfn < b]
    return inside[-1] if inside else -1


def _ref_pcp_locked(batches, orders, starts, ends):
    # Per CPU, from a percpu_refill=1 event to its next allocation, drain, batched
    # commit or vmstat worker run, a free of a pcp order in the refill's zone found
    # the pcp locked; and so did each of a run of frees right after a batched commit
    # (drains aside), in that commit's zone, when the CPU's next event in the batch is
    # a batched commit in that zone of a page the run did not free.
    window, committing, out, base = {}, {}, [], 0
    for ev in batches:
        marked = set()
        for i, e in enumerate(ev):
            kind, c, order = int(e["kind"]), int(e["cpu"]), int(e["order"])
            zone = _zone(int(e["pfn"]), starts, ends)
            if i in marked:
                continue
            if kind == MM_PAGE_ALLOC_ZONE_LOCKED:
                if e["percpu_refill"] == 1:
                    window[c] = zone
                committing.pop(c, None)
            elif kind == MM_PAGE_FREE:
                if c in window:
                    if window[c] == zone and 0 <= order and orders[min(order, len(orders) - 1)]:
                        out.append(base + i)
                elif c in committing:
                    mine = [j for j in range(i, len(ev)) if ev[j]["cpu"] == c]
                    run = []
                    for j in mine:
                        if ev[j]["kind"] != MM_PAGE_FREE:
                            break
                        run.append(j)
                    nxt = mine[len(run)] if len(run) < len(mine) else None
                    if nxt is not None and ev[nxt]["kind"] == MM_PAGE_FREE_BATCHED \
                            and _zone(int(ev[nxt]["pfn"]), starts, ends) == committing[c] \
                            and all(ev[r]["pfn"] != ev[nxt]["pfn"] for r in run):
                        hit = [r for r in run if 0 <= ev[r]["order"] and orders[min(ev[r]["order"], len(orders) - 1)]
                               and _zone(int(ev[r]["pfn"]), starts, ends) == committing[c]]
                        out += [base + r for r in hit]
                        marked.update(hit)
                    committing.pop(c)
            elif kind == MM_PAGE_FREE_BATCHED:
                window.pop(c, None)
                committing[c] = zone
            elif kind == MM_PAGE_PCPU_DRAIN:
                window.pop(c, None)
            elif kind in (MM_PAGE_ALLOC, VMSTAT_UPDATE):
                window.pop(c, None)
                committing.pop(c, None)
        base += len(ev)
    return out


def _mark_locked(ev, orders, starts=(), ends=(), window=None, committing=None):
    window = np.full(NCPU, _replay.UNLOCKED, np.int16) if window is None else window
    committing = np.full(NCPU, _replay.UNLOCKED, np.int16) if committing is None else committing
    return _replay.mark_pcp_locked_frees(ev["kind"], ev["cpu"], ev["pfn"], ev["order"], ev["percpu_refill"], orders,
                                         np.array(starts, np.int64), np.array(ends, np.int64), window, committing)


@settings(max_examples=80, deadline=None)
@given(st.lists(event, min_size=1, max_size=80), st.lists(st.integers(0, 80), max_size=4),
       st.sampled_from([((), ()), ((0,), (200,)), ((0, 48), (48, 200)), ((8, 64), (40, 96))]))
def test_frees_that_find_the_pcp_locked_are_marked_as_the_reference_across_batches(rows, cuts, zones):
    orders = np.array([o <= 2 for o in range(11)], np.uint8)
    window, committing = np.full(NCPU, _replay.UNLOCKED, np.int16), np.full(NCPU, _replay.UNLOCKED, np.int16)
    marked, base = [], 0
    for e in _batches(rows, cuts):
        before = e["kind"].copy()
        n = _mark_locked(e, orders, *zones, window, committing)
        got = np.flatnonzero(e["kind"] != before)
        assert len(got) == n and (before[got] == MM_PAGE_FREE).all()
        assert (e["kind"][got] == MM_PAGE_FREE_PCP_LOCKED).all()
        marked += (got + base).tolist()
        base += len(e)
    assert marked == sorted(_ref_pcp_locked(_batches(rows, cuts), orders, *zones))


def test_a_free_between_a_refill_and_its_allocation_is_marked():
    rows = [(MM_PAGE_ALLOC_ZONE_LOCKED, 1, 1, 0, 1, 1),     # 0: CPU 1 refills under its pcp lock
            (MM_PAGE_FREE, 1, 2, 0, 1, 0),                  # 1: an interrupt's free: marked
            (MM_PAGE_FREE, 0, 3, 0, 1, 0),                  # 2: another CPU's: not
            (MM_PAGE_FREE, 1, 4, 5, 1, 0),                  # 3: an order with no pcp list: not
            (MM_PAGE_FREE, 1, 9, 0, 1, 0),                  # 4: another zone's (its pcp is not locked): not
            (MM_PAGE_ALLOC, 1, 1, 0, 1, 0),                 # 5: the allocation ends the window
            (MM_PAGE_FREE, 1, 5, 0, 1, 0)]                  # 6: not
    ev = _events(rows)
    orders = np.array([o <= 3 for o in range(11)], np.uint8)
    assert _mark_locked(ev, orders, (0, 64), (64, 128)) == 1
    assert np.flatnonzero(ev["kind"] == MM_PAGE_FREE_PCP_LOCKED).tolist() == [1]
    # Written back as text, it is the mm_page_free it was read from.
    out = io.StringIO()
    write_ftrace([TraceEvent(MM_PAGE_FREE_PCP_LOCKED, 1, 2 * 8, 0, timestamp=1.0)], out)
    assert "mm_page_free: " in out.getvalue() and "pfn=0x10 order=0" in out.getvalue()


def test_a_free_inside_a_batched_commit_is_marked():
    # free_unref_folios holds CPU 1's pcp->lock from its first mm_page_free_batched to
    # its last, a drain between them included: an interrupt's frees there fail the
    # trylock, but for a page of another zone, whose pcp is not locked. Frees followed
    # by a commit of one of their own pages are the next batch's mm_page_free records,
    # from the task, unlocked.
    rows = [(MM_PAGE_FREE, 1, 1, 0, 1, 0),                  # 0: the task's first batch
            (MM_PAGE_FREE, 1, 2, 0, 1, 0),                  # 1
            (MM_PAGE_FREE_BATCHED, 1, 1, 0, 1, 0),          # 2: its commits begin
            (MM_PAGE_PCPU_DRAIN, 1, 9, 0, 1, 0),            # 3: the commit drains
            (MM_PAGE_FREE, 1, 3, 0, 1, 0),                  # 4: an interrupt's: marked
            (MM_PAGE_FREE, 0, 4, 0, 1, 0),                  # 5: another CPU's: not
            (MM_PAGE_FREE, 1, 5, 4, 1, 0),                  # 6: no pcp list of order 4: not
            (MM_PAGE_FREE, 1, 10, 0, 1, 0),                 # 7: another zone's: not
            (MM_PAGE_FREE_BATCHED, 1, 2, 0, 1, 0),          # 8: the commits go on
            (MM_PAGE_FREE, 1, 6, 0, 1, 0),                  # 9: the next batch's: not
            (MM_PAGE_FREE_BATCHED, 1, 6, 0, 1, 0),          # 10
            (MM_PAGE_FREE, 1, 7, 0, 1, 0)]                  # 11: the batch ends it: not
    ev = _events(rows)
    orders = np.array([o <= 3 for o in range(11)], np.uint8)
    committing = np.full(NCPU, _replay.UNLOCKED, np.int16)
    assert _mark_locked(ev, orders, (0, 72), (72, 128), committing=committing) == 1
    assert np.flatnonzero(ev["kind"] == MM_PAGE_FREE_PCP_LOCKED).tolist() == [4]
    assert committing.tolist() == [_replay.UNLOCKED] * NCPU


class RefRegions:
    """kstate's carving of free blocks below a pageblock, in plain Python: loose and
    tight regions per order, last in first out; a split's last upper half (the free
    block's buddy) is tight, and only loose regions of the order itself are taken."""

    def __init__(self, starts, block_order):
        self.block_order = block_order
        self.loose = [[] for _ in range(block_order + 1)]
        self.tight = [[] for _ in range(block_order + 1)]
        self.tight[block_order] = sorted(starts, reverse=True)

    def place(self, order):
        if self.loose[order]:
            return self.loose[order].pop()
        for k in range(order + 1, self.block_order + 1):
            for pool in (self.loose[k], self.tight[k]):
                if pool:
                    pfn = pool.pop()
                    for j in range(k - 1, order - 1, -1):
                        (self.tight if j == order else self.loose)[j].append(pfn + (1 << j))
                    return pfn
        return None


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(0, 40), max_size=6, unique=True), st.lists(st.integers(0, 9), min_size=4, max_size=4))
def test_carved_free_blocks_are_the_references(blocks, nr_free):
    block_order = 3
    starts = np.array(sorted(b << block_order for b in blocks), np.int64)
    regions, want, missed = RefRegions(starts.tolist(), block_order), [], 0
    for order in range(block_order - 1, -1, -1):
        for _ in range(nr_free[order]):
            pfn = regions.place(order)
            if pfn is None:
                missed += 1 << order
            else:
                want.append((pfn, order))
    pfns, orders = np.full(sum(nr_free), -1, np.int64), np.full(sum(nr_free), -1, np.int8)
    n, lost = _replay.carve_free_blocks(starts, np.array(nr_free, np.int64), block_order, pfns, orders)
    assert list(zip(pfns[:n].tolist(), orders[:n].tolist())) == want and lost == missed
    # No two free blocks overlap or are free buddies of one order.
    got = set(want)
    assert not any((pfn ^ (1 << o), o) in got for pfn, o in got)
    pages = [p for pfn, o in got for p in range(pfn, pfn + (1 << o))]
    assert len(pages) == len(set(pages))


def test_carving_refuses_too_little_room():
    with pytest.raises(ValueError, match="room for 1 blocks, not 2"):
        _replay.carve_free_blocks(np.zeros(1, np.int64), np.array([2, 0, 0, 0], np.int64), 3,
                                  np.zeros(1, np.int64), np.zeros(1, np.int8))
