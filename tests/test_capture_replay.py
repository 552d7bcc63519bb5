"""Replay from a traced kernel's state: seeding, untraced frees, the vmstat timer, the
figures read off kmem events, the comparison and --check."""

import collections
import io
import json
import pathlib

import numpy as np
import pytest

import pcpemu
from pcpemu.kernel.gfp import MIGRATETYPE_NAMES
from pcpemu.kernel.ftrace import (EVENT_DTYPE, MM_PAGE_ALLOC, MM_PAGE_ALLOC_EXTFRAG, MM_PAGE_ALLOC_ZONE_LOCKED,
                                  MM_PAGE_FREE, MM_PAGE_FREE_BATCHED, MM_PAGE_PCPU_DRAIN, VMSTAT_UPDATE,
                                  read_event_batches, write_ftrace)
from pcpemu.kernel.procfs import read_pagetypeinfo, read_zoneinfo
from pcpemu.kernel.gfp import ZONE_NAMES
from pcpemu.machine import OP_DTYPE, OP_PCP_REVEAL, PCP_REVEAL_ALL, Machine, pcp_reveal_gfp
from pcpemu.runs import kstate
from pcpemu.runs.capture_replay import (check, comparison_text, fidelity_on_capture, pin_spread, replay_capture,
                                        spread_text)
from pcpemu.runs.replay import FIGURES, StartState, _EventFigures, replay
from pcpemu.runs.replaytext import replay_text
from pcpemu.tools import cli

CAP = pathlib.Path(__file__).parent / "data" / "capture-6.18-small"
GIT = pathlib.Path(__file__).parent / "data" / "capture-6.18-git"
TMPFS_HUGE = pathlib.Path(__file__).parent / "data" / "capture-6.18-tmpfshuge"


@pytest.fixture(scope="module")
def cap_result():
    return replay_capture(CAP)


def _seeded():
    zi = read_zoneinfo(CAP / "before-zoneinfo")
    cfg = pcpemu.KernelConfig.from_zoneinfo(zi, "v6.18")
    m = Machine(cfg)
    seed = kstate.seed_machine(m, zi, read_pagetypeinfo(CAP / "before-pagetypeinfo"))
    return m, zi, seed


def _rows(text, zone):
    return [line.split("type")[1].split()[1:] for line in text.splitlines()
            if f"zone {zone:>8}, type" in line and "CMA" not in line]


def test_seeding_lays_down_the_traced_kernels_free_lists_and_pcp_lists():
    m, zi, seed = _seeded()
    m.check()
    shown = (CAP / "before-pagetypeinfo").read_text()
    # Normal: every free list, order by order and type by type, as the kernel had it.
    assert _rows(m.pagetypeinfo(), "Normal")[:5] == _rows(shown, "Normal")[:5]
    normal = [z for z in zi["zones"] if z["name"] == "Normal"][0]
    for p in normal["pagesets"]:
        st = m.pcp_state("Normal", p["cpu"])
        assert (st["count"], st["high"]) == (p["count"], p["high"])
    assert m.stats()["ALLOC_CALLS"] == 0 and m.stats()["ZONE_LOCK"] == 0
    assert any(n.startswith("pcp pages the trace does not place on a list start on the first of the chain")
               for n in seed.notes)


def test_layout_never_leaves_two_free_buddies_apart():
    # Free blocks of orders 0-8 carved into partly used blocks must not merge.
    free = np.zeros((4, 11), np.int64)
    free[1, :9] = [7, 5, 4, 3, 3, 2, 2, 1, 1]
    free[1, 9], free[1, 10] = 2, 3
    counts = np.array([1, 12, 0, 0])
    notes = []
    types, pfns, orders = kstate._layout(1 << 12, 13, counts, free, "Normal", notes)
    cfg = pcpemu.KernelConfig.preset("v6.10", zones={"Normal": 1 << 14}, cpus=1)
    m = Machine(cfg)
    z = m.populated_zones[0]
    full = np.full(-(-z.managed // 512), 1, np.uint8)
    full[8:21] = types
    m.seed_zone("Normal", full, np.array(pfns), np.array(orders, np.int8), kstate.UNTRACED)
    m.check()
    got = _rows(m.pagetypeinfo(), "Normal")[1]
    assert [int(v) for v in got] == free[1].tolist(), notes


def test_untraced_frees_come_from_the_untraced_owner(cap_result):
    r = cap_result
    before = r.untraced["frees"]["free_before_trace"] + r.untraced["frees"]["free_untraced_alloc"]
    # Each either came from the untraced owner or freed a page an untraced allocation took.
    assert before > 0 and r.untraced["replayed"] + r.untraced["allocs"] == before - r.untraced["pool_exhausted"]
    assert r.skipped["free_before_trace"] == 0 and r.skipped["free_untraced_alloc"] == 0
    boot = replay_capture(CAP, from_boot=True)
    assert boot.untraced is None and boot.skipped["free_before_trace"] > 0
    total = r.policies["split"]["total"]
    assert total["alloc_failed"] == 0 and total["free_skipped"] == 0


def test_the_vmstat_worker_runs_at_the_traces_vmstat_update_events(cap_result):
    ev = np.concatenate(list(read_event_batches(CAP / "trace.txt.xz")))
    shown = np.bincount(ev["cpu"][ev["kind"] == VMSTAT_UPDATE], minlength=2).tolist()
    assert sum(shown) > 0 and cap_result.timer == {"every": "events", "runs": shown}
    assert cap_result.policies["split"]["total"]["drains"] >= 0


def test_the_count_the_kernels_events_alone_lead_to_stands_beside_the_after_count(cap_result, capsys):
    zi = read_zoneinfo(CAP / "before-zoneinfo")
    ev = np.concatenate(list(read_event_batches(CAP / "trace.txt.xz")))
    pages = np.where(ev["order"] >= 0, 1 << np.clip(ev["order"].astype(np.int64), 0, 20), 0)
    pcp = (ev["order"] >= 0) & ((ev["order"] <= 3) | (ev["order"] == 9))
    kind = ev["kind"]
    sign = np.select([kind == MM_PAGE_PCPU_DRAIN, pcp & ((kind == MM_PAGE_FREE) | (kind == MM_PAGE_ALLOC_ZONE_LOCKED)),
                      pcp & (kind == MM_PAGE_ALLOC)], [-1, 1, -1], 0)
    rows = {(r["zone"], r["cpu"]): r for r in cap_result.end_state["split"]}
    checked = 0
    for z in zi["zones"]:
        if (z["name"], 0) not in rows:
            continue
        inside = (ev["pfn"] >= z["start_pfn"]) & (ev["pfn"] < z["start_pfn"] + z["spanned"])
        for p in z["pagesets"]:
            mine = inside & (ev["cpu"] == p["cpu"])
            want = p["count"] + int((sign[mine] * pages[mine]).sum())
            assert rows[(z["name"], p["cpu"])]["count"]["traced"] == want
            checked += want != p["count"]
    assert checked
    r = rows[("Normal", 1)]["count"]
    print(replay_text(cap_result))
    assert f"(events alone {r['traced']:,}: {r['kernel'] - r['traced']:+,} with no event)" in capsys.readouterr().out


def test_pages_move_between_the_untraced_owner_and_a_pcp():
    m, zi, _ = _seeded()
    count = m.pcp_state("Normal", 1)["count"]
    owned = len(m.allocated_blocks())
    assert m.pcp_untraced_move("Normal", 1, 5) == 5
    assert m.pcp_state("Normal", 1)["count"] == count + 5 and len(m.allocated_blocks()) == owned - 5
    assert m.pcp_untraced_move("Normal", 1, -7) == -7
    assert m.pcp_state("Normal", 1)["count"] == count - 2 and len(m.allocated_blocks()) == owned + 2
    assert m.pcp_untraced_move("Normal", 1, -10 ** 9) == -(count - 2)      # the lists run out
    m.check()
    with pytest.raises(pcpemu.PcpemuError):
        m.pcp_untraced_move("Normal", 7, 1)
    assert Machine(_tiny()).pcp_untraced_move("Normal", 0, 3) == 0       # no untraced owner


def test_pages_move_onto_and_off_the_list_named():
    # Onto the named list's tail in blocks of its order; back from that list's oldest first.
    m, zi, _ = _seeded()
    reclaimable = m.order_to_pindex("Reclaimable", 0)
    before = m.pcp_list("Normal", 1, reclaimable)
    assert m.pcp_untraced_move("Normal", 1, 4, reclaimable) == 4
    after = m.pcp_list("Normal", 1, reclaimable)
    assert after[:len(before)] == before and len(after) == len(before) + 4
    order1 = m.order_to_pindex("Movable", 1)
    count = m.pcp_state("Normal", 1)["count"]
    assert m.pcp_untraced_move("Normal", 1, 5, order1) == 4          # two order-1 blocks; a third would be 6
    assert len(m.pcp_list("Normal", 1, order1)) == 2 and m.pcp_state("Normal", 1)["count"] == count + 4
    assert m.pcp_untraced_move("Normal", 1, -4, reclaimable) == -4
    assert m.pcp_list("Normal", 1, reclaimable) == before
    m.check()
    with pytest.raises(pcpemu.PcpemuError, match="pindex"):
        m.pcp_untraced_move("Normal", 1, 1, m.nr_pcp_lists)


def _pin_on_cpu1(mt, order):
    # A seeded machine whose CPU 1 waits its unplaced pages on the list of (mt, order),
    # the PcpLists and FirstDrains a first-drain pin works with, the zone's index and
    # that list's pindex.
    m, zi, seed = _seeded()
    lists = kstate.PcpLists(m, zi)
    lists.stream_from(seed)
    z = lists.pool.names.index("Normal")
    lists.rest[z, 1] = waiting = m.order_to_pindex(mt, order)
    first = kstate.FirstDrains(zi, m.config.cpus, np.ones(11, bool), m.config.pcp_batch_scale_max)
    return m, lists, z, first, waiting


def _order0_pages(m, cpu):
    return sum(len(m.pcp_list("Normal", cpu, m.order_to_pindex(t, 0))) for t in ("Unmovable", "Movable", "Reclaimable"))


def test_a_worker_pin_leaves_the_order0_pages_its_run_drained():
    # The kernel's worker run drained order-0 pages first (decay_pcp_high starts at the
    # first list), so its order-0 lists held them: a pin that takes pages off leaves
    # them and takes the rest in whole blocks of the waiting THP list, the nearest
    # number (it took every order-0 page and emptied the lists the run drained).
    from pcpemu.runs.replay import _first_drain_sync
    m, lists, z, first, thp = _pin_on_cpu1("Movable", 9)
    assert m.seed_pcp("Normal", 1, 3, m.pcp_state("Normal", 1)["high"], kstate.UNTRACED, pindex=thp) == 3
    order0, st = _order0_pages(m, 1), m.pcp_state("Normal", 1)
    pages = st["count"] - 600 - st["decayed_high"]               # the pin: 600 pages off
    _first_drain_sync(first, lists, {"x": m}, "Normal", 1, "vmstat_update", pages, order0 - 10, 1.0)(m)
    assert first.found[0]["pages"] == {"x": -600} and first.found[0]["moved"] == {"x": -522}
    assert len(m.pcp_list("Normal", 1, thp)) == 2 and _order0_pages(m, 1) == order0 - 10
    m.check()


def test_a_first_drain_pin_waits_with_the_pages_the_trace_has_not_placed():
    # The pages a first drain's pin adds join the CPU's waiting pages (PcpLists.rest),
    # so that they move on with them when the trace shows that list empty.
    from pcpemu.runs.replay import _first_drain_sync
    m, lists, z, first, rest = _pin_on_cpu1("Reclaimable", 0)
    left, before = int(lists.left[z, 1]), m.pcp_list("Normal", 1, rest)
    st = m.pcp_state("Normal", 1)
    _first_drain_sync(first, lists, {"x": m}, "Normal", 1, "free", st["high"] - 1 - st["count"] - 12, 0, 1.0)(m)
    assert first.found[0]["moved"] == {"x": 12} and m.pcp_state("Normal", 1)["count"] == st["count"] + 12
    after = m.pcp_list("Normal", 1, rest)
    assert after[:len(before)] == before and len(after) == len(before) + 12
    assert lists.left[z, 1] == left + 12
    lists.wait_more("Normal", 1, -(left + 100))
    assert lists.left[z, 1] == 0                                      # never below none
    m.check()


def test_blocks_leave_a_pcp_list_from_its_head_for_the_untraced_owner():
    m, zi, _ = _seeded()
    pindex = m.order_to_pindex("Movable", 0)
    cpu = next(c for c in range(m.config.cpus) if len(m.pcp_list("Normal", c, pindex)) > 10)
    before, count = m.pcp_list("Normal", cpu, pindex), m.pcp_state("Normal", cpu)["count"]
    owned = len(m.allocated_blocks())
    assert m.pcp_untraced_take("Normal", cpu, "Movable", 0, 3) == 3
    assert m.pcp_list("Normal", cpu, pindex) == before[3:]           # the newest, as an allocation takes them
    assert m.pcp_state("Normal", cpu)["count"] == count - 3 and len(m.allocated_blocks()) == owned + 3
    assert m.pcp_untraced_take("Normal", cpu, "Movable", 0, 10 ** 9) == len(before) - 3   # the list runs out
    assert m.pcp_list("Normal", cpu, pindex) == []
    assert m.pcp_untraced_take("Normal", cpu, "Movable", 5, 1) == 0     # no pcp list of that order
    m.check()
    with pytest.raises(pcpemu.PcpemuError):
        m.pcp_untraced_take("Normal", 7, "Movable", 0, 1)
    assert Machine(_tiny()).pcp_untraced_take("Normal", 0, "Movable", 0, 3) == 0     # no untraced owner


def test_a_refill_of_a_list_the_kernel_still_held_pages_on_takes_them_off():
    # CPU 0 refills its Movable list with 60 pages (15 << 2) and allocates 2 of them; the rest
    # leave with no event (alloc_pages_bulk, never freed). The kernel's next refill of
    # that list shows it empty: the emulated list loses as many, so the emulator too
    # refills there. Without that, it would still hold pages and not refill.
    def refill(ts, base):
        return [_line(0, ts, "mm_page_alloc_zone_locked", f"page=00000000deadbeef pfn={base + i:#x} order=0 "
                      "migratetype=1 percpu_refill=1") for i in range(60)]

    def alloc(ts, pfn):
        return [_line(0, ts, "mm_page_alloc", f"page=00000000deadbeef pfn={pfn:#x} order=0 migratetype=1 "
                      "gfp_flags=GFP_HIGHUSER_MOVABLE")]

    text = refill(1.0, 0x1000) + alloc(1.0, 0x1000) + alloc(1.1, 0x1001) + refill(2.0, 0x2000) + alloc(2.0, 0x2000)
    zi, pti = read_zoneinfo(_tiny_zoneinfo()), read_pagetypeinfo(_tiny_pagetypeinfo())
    r = replay(io.BytesIO("".join(text).encode()), {"x": Machine(_tiny())}, start=StartState(zi, pti, timer=None))
    takes = r.untraced["pcp_takes"]
    assert (takes["refills"], takes["blocks"], takes["pages"], takes["fewer_than_none"]) == (1, 58, 58, 0)
    assert takes["relisted_pages"] == 0           # every page it freed was of a pageblock the trace showed
    assert 0 < takes["taken"]["x"] <= 58
    cpu0 = r.policies["x"]["comparison"]["per_cpu"][0]
    assert cpu0["refill_calls"]["kernel"] == cpu0["refill_calls"]["emulated"] == 2
    assert "1 refills of pcp lists the kernel's events still held 58 pages on" in replay_text(r)


def test_first_drains_are_found_where_they_pin_the_count():
    F, B, D, A, V = MM_PAGE_FREE, MM_PAGE_FREE_BATCHED, MM_PAGE_PCPU_DRAIN, MM_PAGE_ALLOC, VMSTAT_UPDATE
    zi = read_zoneinfo(CAP / "before-zoneinfo")
    normal = next(z for z in zi["zones"] if z["name"] == "Normal")["start_pfn"]

    def find(rows, first=None):
        ev = np.zeros(len(rows), EVENT_DTYPE)
        for i, (kind, cpu, order, page) in enumerate(rows):
            ev[i]["kind"], ev[i]["cpu"], ev[i]["order"] = kind, cpu, order
            ev[i]["pfn"] = -1 if page < 0 else normal + 16 * page
        first = first or kstate.FirstDrains(zi, 2, np.array([o <= 3 or o == 9 for o in range(11)]), 5)
        return first.find(ev), first

    zone = kstate.FirstDrains(zi, 2, np.zeros(11, bool), 5).names.index("Normal")
    rows = [(A, 0, 0, 1), (F, 0, 0, 2), (F, 0, 0, 3), (F, 0, 1, 4),    # batched: three prepares (one of order 1) ...
            (F, 1, 0, 9), (B, 0, 0, 2), (B, 0, 0, 3), (D, 0, 0, 7),     # ... the second one's commit drains
            (B, 0, 1, 4), (D, 0, 0, 7),
            (V, 1, -1, -1), (D, 1, 0, 8), (D, 1, 1, 8), (A, 1, 0, 9)]   # the worker drains 3 pages
    # CPU 0: the run of frees starts at event 1; one page went on the list before page 3's.
    # The worker's run: one of its pages from an order-0 list.
    got, first = find(rows)
    assert got == [(1, zone, 0, "free", 1, 0), (10, zone, 1, "vmstat_update", 3, 1)]
    assert find(rows, first)[0] == []                                   # once per (zone, CPU)
    # What pins nothing: a drain set off by an order-2 free, a worker drain of a whole
    # batch << 5 (63 << 5 here: it may have been capped), one the batch may cut short.
    full = [(D, 1, 0, 8)] * (63 << 5)
    rows = [(F, 1, 2, 5), (D, 1, 0, 8), (V, 1, -1, -1), *full, (A, 1, 0, 9), (V, 1, -1, -1), (D, 1, 0, 8)]
    assert find(rows)[0] == []
    # Nor a drain of a batch of folios after an earlier drain of the same batch: that
    # one, set off by an order-9 folio, took pages the frees before this one's do not show.
    rows = [(A, 0, 0, 1), (F, 0, 9, 2), (F, 0, 0, 3), (F, 0, 0, 4),
            (B, 0, 0, 2), (D, 0, 9, 7), (B, 0, 0, 3), (B, 0, 0, 4), (D, 0, 0, 7)]
    assert find(rows)[0] == []


def test_a_page_freed_again_on_another_cpu_replays():
    # A page freed on CPU 1, then freed again on CPU 0 before CPU 1 allocates: the
    # untraced allocation that took it off CPU 1's list goes before the second free.
    def alloc(cpu, ts, pfn):
        return _line(cpu, ts, "mm_page_alloc", f"page=00000000deadbeef pfn={pfn:#x} order=0 migratetype=0 "
                     "gfp_flags=GFP_KERNEL")

    def free(cpu, ts, pfn):
        return _line(cpu, ts, "mm_page_free", f"page=00000000deadbeef pfn={pfn:#x} order=0")

    text = alloc(0, 1.0, 0x1000) + free(1, 1.1, 0x1000) + free(0, 1.2, 0x1000) + alloc(1, 1.3, 0x2000)
    zi, pti = read_zoneinfo(_tiny_zoneinfo()), read_pagetypeinfo(_tiny_pagetypeinfo())
    r = replay(io.BytesIO(text.encode()), {"x": Machine(_tiny())}, start=StartState(zi, pti, timer=None))
    assert r.untraced["allocs"] == 1 and r.replayed["free"] == 2


def test_first_refills_show_alloc_factor():
    R, X, A = MM_PAGE_ALLOC_ZONE_LOCKED, MM_PAGE_ALLOC_EXTFRAG, MM_PAGE_ALLOC
    zi = read_zoneinfo(_tiny_zoneinfo())              # Normal from pfn 0, batch 15 on both CPUs

    def events(rows):
        ev = np.zeros(len(rows), EVENT_DTYPE)
        for i, (kind, cpu, n) in enumerate(rows):
            ev[i]["kind"], ev[i]["cpu"], ev[i]["pfn"], ev[i]["order"] = kind, cpu, 16 * i, 0
            ev[i]["percpu_refill"] = 1 if kind == R else -1
        return ev

    first = kstate.AllocFactorRefills(zi, 2, np.ones(11, bool), 5)
    # CPU 0: 15 << 2 blocks with a fallback's extfrag event inside; CPU 1: 100 blocks
    # (capped: not batch << k); CPU 0's second refill is no first one (it is a fall).
    rows = [(A, 0, 0)] + [(R, 0, 0)] * 30 + [(X, 0, 0)] + [(R, 0, 0)] * 30 + [(A, 0, 0)] + [(R, 1, 0)] * 100 \
        + [(A, 1, 0)] + [(R, 0, 0)] * 15 + [(A, 0, 0)]
    got = first.find(events(rows))
    # CPU 1's capped 100 blocks say 15 << alloc_factor was above 100: at least 3.
    assert sorted((at, row["cpu"], row.get("at_least", row["alloc_factor"])) for at, row in got) \
        == [(1, 0, 2), (63, 1, 3), (164, 0, 0)]
    assert [(r["cpu"], r["blocks"], r["alloc_factor"]) for r in first.first] == [(0, 60, 2), (1, 100, None)]
    assert first.first[1]["at_least"] == 3
    assert [(r["cpu"], r["blocks"]) for r in first.falls] == [(0, 15)]
    # A capped refill leaves alloc_factor where it was, at least what it shows: a
    # refill of one batch after it, with no free between, is a fall; after one free
    # (3 >> 1 = 1) it is one too, after two it is not.
    for frees, fell in ((0, True), (1, True), (2, False)):
        first = kstate.AllocFactorRefills(zi, 2, np.ones(11, bool), 5)
        got = first.find(events([(A, 1, 0)] + [(R, 1, 0)] * 100 + [(A, 1, 0)] + [(MM_PAGE_FREE, 1, 0)] * frees
                                + [(R, 1, 0)] * 15 + [(A, 1, 0)]))
        assert [r["expected"] for r in first.falls] == ([3 >> frees] if fell else []), frees
    # A run the batch ends is finished in the next one, its setting before that batch's first op.
    first = kstate.AllocFactorRefills(zi, 2, np.ones(11, bool), 5)
    assert first.find(events([(A, 1, 0)] + [(R, 1, 0)] * 40)) == []
    got = first.find(events([(R, 1, 0)] * 80 + [(A, 1, 0)]))
    assert [(at, row["blocks"], row["alloc_factor"]) for at, row in got] == [(0, 120, 3)]


def _refill_then_allocs(blocks):
    # CPU 0 at 1 s: a refill of its Movable order-0 list with blocks pages, then an
    # allocation of each.
    text = [_line(0, 1.0, "mm_page_alloc_zone_locked", f"page=00000000deadbeef pfn={0x1000 + i:#x} order=0 "
                  "migratetype=1 percpu_refill=1") for i in range(blocks)]
    text += [_line(0, 1.0 + i * 1e-6, "mm_page_alloc", f"page=00000000deadbeef pfn={0x1000 + i:#x} order=0 "
                   "migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE") for i in range(blocks)]
    return "".join(text).encode()


def test_a_capped_first_refill_raises_the_emulated_alloc_factor_to_the_least_it_shows():
    # CPU 0 starts with 2,090 pages at high 2,100 (batch 15). The kernel's first refill
    # takes 55 blocks: high + (15 << 2) - count - batch, capped below 15 << 2, so its
    # alloc_factor was at least 2. At 0 the emulator would take max(10, 15) = 15.
    held = Machine(_tiny())                   # pages that are not free, for the pcp's 2,090
    for _ in range(8):
        held.alloc_pages("GFP_KERNEL", 9)
    zoneinfo = _tiny_zoneinfo().replace("cpu: 0\n              count: 0\n              high:  0",
                                        "cpu: 0\n              count: 2090\n              high:  2100", 1)
    start = StartState(read_zoneinfo(zoneinfo), read_pagetypeinfo(held.pagetypeinfo()), timer=None)
    r = replay(io.BytesIO(_refill_then_allocs(55)), {"x": Machine(_tiny())}, start=start)
    assert r.untraced["first_refills"] == [{"zone": "Normal", "cpu": 0, "blocks": 55, "alloc_factor": None,
                                            "at_least": 2, "was": {"x": 0}}]
    cpu0 = r.policies["x"]["comparison"]["per_cpu"][0]
    assert cpu0["refill_blocks"]["emulated"] == cpu0["refill_blocks"]["kernel"] == 55
    assert "capped by high - count: alloc_factor at least 2 (batch << alloc_factor above the blocks); the " \
           "emulated one raised to it (x from 0)" in replay_text(r)


def test_a_free_between_a_refill_and_its_allocation_leaves_the_pcp_alone():
    # CPU 0 refills 15 << 2, 15 << 3 and 15 << 4 blocks (alloc_factor 2, 3, 4), taking
    # each list down to empty. Between the second refill and the allocation it serves,
    # an interrupt frees a page: the task holds pcp->lock, the trylock fails and the
    # page goes to the buddy, alloc_factor untouched. Were it a pcp free, alloc_factor
    # would halve (4 -> 2) and the third refill would be 60 blocks, not 240.
    lines, pfn, t = [], 0x1000, 1.0

    def refill_and_take(n, free_inside=None):
        nonlocal pfn, t
        out = [_line(0, t, "mm_page_alloc_zone_locked", f"page=00000000deadbeef pfn={pfn + i:#x} order=0 "
                     "migratetype=1 percpu_refill=1") for i in range(n)]
        if free_inside is not None:
            out.append(_line(0, t, "mm_page_free", f"page=00000000deadbeef pfn={free_inside:#x} order=0"))
        out += [_line(0, t + i * 1e-6, "mm_page_alloc", f"page=00000000deadbeef pfn={pfn + i:#x} order=0 "
                      "migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE") for i in range(n)]
        pfn, t = pfn + n, t + 1.0
        return out

    lines += refill_and_take(60) + refill_and_take(120, free_inside=0x1001) + refill_and_take(240)
    zi, pti = read_zoneinfo(_tiny_zoneinfo()), read_pagetypeinfo(_tiny_pagetypeinfo())
    r = replay(io.BytesIO("".join(lines).encode()), {"x": Machine(_tiny())}, start=StartState(zi, pti, timer=None))
    assert r.replayed["free_pcp_locked"] == 1
    cpu0 = r.policies["x"]["comparison"]["per_cpu"][0]
    assert cpu0["refill_blocks"]["emulated"] == cpu0["refill_blocks"]["kernel"] == 420
    assert cpu0["refill_calls"]["emulated"] == 3
    assert "1 frees on a CPU whose task held pcp->lock (between a refill and the allocation it served" \
        in replay_text(r)


def test_frees_inside_a_real_batched_commit_go_to_the_buddy():
    # tests/data/capture-6.18-git: softirq frees on CPU 1 between the mm_page_free_batched
    # records of a task's free_unref_folios (under pcp->lock): 31 pages to the buddy.
    # The kernel's one drain of CPU 1 (the vmstat worker's, count - high) took 1,500
    # pages; the replay takes 1,478, and 1,450 with those frees on the pcp.
    r = replay_capture(GIT)
    assert r.replayed["free_pcp_locked"] == 31
    cpu1 = r.policies["split"]["comparison"]["per_cpu"][1]
    assert cpu1["drained_pages"]["kernel"] == 1500
    assert 1470 <= cpu1["drained_pages"]["emulated"] <= 1500


def test_pages_that_came_onto_a_list_with_no_event_are_arrivals():
    # tests/data/capture-6.18-tmpfshuge: CPU 0 allocates 18 Unmovable pages off a list
    # the vmstat worker had drained empty, with no refill between: 14 drained ones and
    # 4 no event had shown (see its README). With an arrival before each the replay
    # makes no refill there; without, one of 252 blocks (1,589 against 1,337).
    r = replay_capture(TMPFS_HUGE)
    takes = r.untraced["pcp_takes"]
    assert takes["arrivals"] >= 18 and takes["arrived"]["split"] == takes["arrivals"]
    cpu0 = r.policies["split"]["comparison"]["per_cpu"][0]
    assert cpu0["refill_blocks"]["kernel"] == 1337 and cpu0["refill_blocks"]["emulated"] == 1337
    assert cpu0["refill_calls"]["emulated"] == cpu0["refill_calls"]["kernel"] == 8
    assert "allocations took a pcp list the kernel's events showed empty" in replay_text(r)


def test_alloc_factor_falls_are_found_where_no_free_explains_them():
    R, X, A, F = MM_PAGE_ALLOC_ZONE_LOCKED, MM_PAGE_ALLOC_EXTFRAG, MM_PAGE_ALLOC, MM_PAGE_FREE
    zi = read_zoneinfo(_tiny_zoneinfo())              # Normal from pfn 0, batch 15 on both CPUs

    def events(rows):
        ev = np.zeros(len(rows), EVENT_DTYPE)
        for i, (kind, cpu) in enumerate(rows):
            ev[i]["kind"], ev[i]["cpu"], ev[i]["pfn"], ev[i]["order"] = kind, cpu, 16 * i, 0
            ev[i]["percpu_refill"] = 1 if kind == R else -1
        return ev

    def run(n, cpu=0):                                # a refill of n blocks and the allocation in it
        return [(R, cpu)] * n + [(A, cpu)]

    falls = kstate.AllocFactorRefills(zi, 2, np.ones(11, bool), 5)
    # 15 << 2 leaves alloc_factor 3; a refill of 15 with no free between fell to 0 (an
    # extfrag event inside the first run does not end it). Then 30 is what 0 leaves:
    # nothing. After 30 (leaves 2) one free halves it to 1: 15 shows 0, a fall; two
    # frees leave 0: 15 shows nothing. 100 blocks was capped below 15 << alloc_factor,
    # which it leaves at 3 or more: the refill of 15 after it is a fall.
    rows = run(30)[:-1] + [(X, 0)] + run(30) + run(15) + run(30) + [(F, 0)] + run(15) + run(30) + [(F, 0)] * 2 \
        + run(15) + run(100) + run(15)
    got = falls.find(events(rows))
    assert [(at, row["alloc_factor"], row.get("expected")) for at, row in got] == [(0, 2, None), (62, 0, 3),
                                                                                   (110, 0, 1), (276, 0, 3)]
    assert [(r["cpu"], r["blocks"]) for r in falls.falls] == [(0, 15), (0, 15), (0, 15)]
    # Another CPU's frees and refills are its own; a run the batch ends is closed in the next.
    falls = kstate.AllocFactorRefills(zi, 2, np.ones(11, bool), 5)
    assert [(at, row["alloc_factor"]) for at, row in falls.find(events(run(60) + [(F, 1)] + [(R, 0)] * 10))] \
        == [(0, 2)]
    got = falls.find(events([(R, 0)] * 5 + [(A, 0)]))
    assert [(at, row["alloc_factor"], row["blocks"]) for at, row in got] == [(0, 0, 15)]
    # Frees of orders with no pcp list do not touch alloc_factor.
    falls = kstate.AllocFactorRefills(zi, 2, np.zeros(11, bool), 5)
    assert [row.get("expected") for _, row in falls.find(events(run(30) + [(F, 0)] + run(15)))] == [None, 2]


def test_the_emulated_alloc_factor_falls_where_the_kernels_refills_show_it():
    # The kernel's CPU 0 refills 15, 30, 60 blocks, then 15 and 30 with no free
    # anywhere: its alloc_factor fell to 0 with no event. The emulator's rules would
    # refill 120 there; the replay sets its alloc_factor at the fall and refills as
    # the kernel did.
    base, text, t = 0x1000, [], 1.0
    for n in (15, 30, 60, 15, 30):
        text += [_line(0, t, "mm_page_alloc_zone_locked", f"page=00000000deadbeef pfn={base + i:#x} order=0 "
                       "migratetype=1 percpu_refill=1") for i in range(n)]
        text += [_line(0, t + (i + 1) * 1e-6, "mm_page_alloc", f"page=00000000deadbeef pfn={base + i:#x} order=0 "
                       "migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE") for i in range(n)]
        base, t = base + n, t + 0.01
    zi, pti = read_zoneinfo(_tiny_zoneinfo()), read_pagetypeinfo(_tiny_pagetypeinfo())
    r = replay(io.BytesIO("".join(text).encode()), {"x": Machine(_tiny())}, start=StartState(zi, pti, timer=None))
    assert r.untraced["alloc_factor_falls"] == [{"zone": "Normal", "cpu": 0, "blocks": 15, "alloc_factor": 0,
                                                 "expected": 3, "was": {"x": 3}}]
    cpu0 = r.policies["x"]["comparison"]["per_cpu"][0]
    assert cpu0["refill_blocks"]["emulated"] == cpu0["refill_blocks"]["kernel"] == 150
    assert cpu0["refill_calls"]["emulated"] == 5
    assert "x: pcp->alloc_factor fell with no event at 1 of the kernel's order-0 refills" in replay_text(r)


def test_the_emulated_alloc_factor_is_set_at_the_kernels_first_refill():
    # The kernel's first refill on CPU 0 takes 15 << 3 blocks: its alloc_factor was 3.
    # The emulator, started at 0, refills as much there.
    zi, pti = read_zoneinfo(_tiny_zoneinfo()), read_pagetypeinfo(_tiny_pagetypeinfo())
    out = io.StringIO()
    r = replay(io.BytesIO(_refill_then_allocs(120)), {"x": Machine(_tiny())}, start=StartState(zi, pti, timer=None),
               emit_trace=out)
    assert r.untraced["first_refills"] == [{"zone": "Normal", "cpu": 0, "blocks": 120, "alloc_factor": 3,
                                            "was": {"x": 0}}]
    cpu0 = r.policies["x"]["comparison"]["per_cpu"][0]
    assert cpu0["refill_blocks"]["emulated"] == cpu0["refill_blocks"]["kernel"] == 120
    assert cpu0["refill_calls"]["emulated"] == 1
    text = replay_text(r)
    assert "x Normal cpu 0: the kernel's first order-0 refill (120 blocks) shows alloc_factor 3" in text
    assert "1 of 1 shown; 0 emulated ones already matched" in text


def test_alloc_factor_is_set_within_its_range():
    m = Machine(_tiny())
    assert m.pcp_set_alloc_factor("Normal", 1, 4) == 0 and m.pcp_state("Normal", 1)["alloc_factor"] == 4
    for bad in (6, -1, True, 2.0):
        with pytest.raises(pcpemu.errors.ConfigError, match="alloc_factor"):
            m.pcp_set_alloc_factor("Normal", 1, bad)
    assert m.pcp_state("Normal", 1)["alloc_factor"] == 4
    with pytest.raises(pcpemu.PcpemuError):
        m.pcp_set_alloc_factor("Normal", 7, 1)


def test_the_emulated_count_is_set_at_the_kernels_first_drain():
    # CPU 0 allocates 6000 pages and frees them. The emulator alone drains at the free
    # that brings its count up to high; a kernel drain after another free says the
    # kernel's lists held that many pages more or fewer than its events show.
    def trace(drain_after=None):
        out = [_line(0, 1.0 + i * 1e-5, "mm_page_alloc", f"page=00000000deadbeef pfn={0x1000 + i:#x} order=0 "
                     "migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE") for i in range(6000)]
        for i in range(6000):
            out.append(_line(0, 2.0 + i * 1e-5, "mm_page_free", f"page=00000000deadbeef pfn={0x1000 + i:#x} order=0"))
            if i == drain_after:
                out.append(_line(0, 2.0 + i * 1e-5, "mm_page_pcpu_drain",
                                 f"page=00000000deadbeef pfn={0x1000:#x} order=0 migratetype=1"))
        return "".join(out).encode()

    zi, pti = read_zoneinfo(_tiny_zoneinfo()), read_pagetypeinfo(_tiny_pagetypeinfo())

    def first_drain(drain_after, shift=0):
        out = io.StringIO()
        r = replay(io.BytesIO(trace(drain_after)), {"x": Machine(_tiny())},
                   start=StartState(zi, pti, timer=None, pin_offset=shift), emit_trace=out)
        ts = next(float(ln.split()[3].rstrip(":")) for ln in out.getvalue().splitlines() if "pcpu_drain" in ln)
        return round((ts - 2.0) * 1e5), r.untraced["first_drains"], replay_text(r)

    own, found, _ = first_drain(None)
    assert found == []
    at, found, text = first_drain(own - 300)
    assert at == own - 300 and found == [{"zone": "Normal", "cpu": 0, "timestamp": 2.0, "set_off_by": "free",
                                          "pages": {"x": 300}, "moved": {"x": 300}, "why": {"x": ""},
                                          "zone_flagged": []}]
    assert "x Normal cpu 0: the kernel's first drain set off by a free shows +300 pcp pages" in text
    # Past a whole drain (batch << 5 = 480 here) the emulated high is what differs: left alone.
    at, found, text = first_drain(own - 1000)
    assert at == own and found[0]["pages"] == {"x": 1000} and found[0]["moved"] == {"x": 0}
    assert "+1,000 pcp pages" in text and "+0 moved (past a whole drain" in text
    # A pin moved by 5 pages (StartState.pin_offset) drains 5 frees earlier; the kernel's
    # offset is still reported as it was measured.
    at, found, text = first_drain(own - 300, shift=5)
    assert at == own - 305 and found[0]["pages"] == {"x": 300} and found[0]["moved"] == {"x": 305}
    assert "each first-drain pin set +5 pages off" in text and "shows +300 pcp pages" in text
    assert "set there" in text


def test_a_first_drain_pin_adds_whole_blocks_of_the_list_the_pages_wait_on():
    # The pages a pin adds wait on the list where the trace has not placed the rest; on
    # a THP list the kernel's count held whole 512-page blocks there, so an offset goes
    # to the nearest whole number of them (+463 is one block, +200 none); pages given
    # back, and order-0 lists, take the offset as it is.
    from pcpemu.runs.replay import _in_blocks
    m = Machine(_tiny())
    thp, order0 = m.order_to_pindex("Movable", 9), m.order_to_pindex("Movable", 0)
    assert [_in_blocks(m, p, thp) for p in (463, 200, 256, 1100, -100)] == [512, 0, 512, 1024, -100]
    assert _in_blocks(m, 463, order0) == 463 and _in_blocks(m, 463, None) == 463


def test_the_emulated_count_is_set_at_the_kernels_first_worker_drain():
    # CPU 0 allocates 3000 pages and frees them; at 3 s the vmstat worker drains pages
    # in the kernel. decay_pcp_high drained count minus the decayed high: the emulated
    # count is set so that its worker drains as many.
    def trace(drained):
        out = [_line(0, 1.0 + i * 1e-5, "mm_page_alloc", f"page=00000000deadbeef pfn={0x1000 + i:#x} order=0 "
                     "migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE") for i in range(3000)]
        out += [_line(0, 2.0 + i * 1e-5, "mm_page_free", f"page=00000000deadbeef pfn={0x1000 + i:#x} order=0")
                for i in range(3000)]
        out.append(_line(0, 3.0, "workqueue_execute_start", "work struct 00000000deadbeef: function vmstat_update"))
        out += [_line(0, 3.0, "mm_page_pcpu_drain", f"page=00000000deadbeef pfn={0x1000 + i:#x} order=0 migratetype=1")
                for i in range(drained)]
        out.append(_line(0, 3.5, "mm_page_alloc", "page=00000000deadbeef pfn=0x9000 order=0 migratetype=1 "
                         "gfp_flags=GFP_HIGHUSER_MOVABLE"))
        return "".join(out).encode()

    zi, pti = read_zoneinfo(_tiny_zoneinfo()), read_pagetypeinfo(_tiny_pagetypeinfo())
    for drained, applied in ((0, None), (100, True), (300, False)):
        out = io.StringIO()
        r = replay(io.BytesIO(trace(drained)), {"x": Machine(_tiny())}, start=StartState(zi, pti), emit_trace=out)
        emulated = sum("pcpu_drain" in ln for ln in out.getvalue().splitlines())
        found = r.untraced["first_drains"]
        if applied is None:                 # the kernel's worker drained nothing: nothing pinned
            assert found == [] and emulated == 0
        elif applied:
            assert emulated == drained and found[0]["set_off_by"] == "vmstat_update" \
                and found[0]["moved"] == found[0]["pages"] and found[0]["pages"]["x"] > 0
        else:                               # past a whole drain (15 << 5 = 480 pages here): only reported
            assert emulated == 0 and found[0]["pages"]["x"] > 480 and found[0]["moved"] == {"x": 0}


def _tiny():
    return pcpemu.KernelConfig.preset("v6.10", zones={"Normal": 65536}, cpus=2)


def _line(cpu, ts, event, fields):
    return f"          bash-1    [{cpu:03d}] .....  {ts:.6f}: {event}: {fields}\n"


def test_a_timer_on_the_traces_clock_decays_pcp_high():
    # Each CPU allocates 3000 pages, frees them, and allocates once more at 3.5 s. On
    # the trace's clock the vmstat worker runs at 2 s and 3 s on each CPU: it cuts
    # pcp->high by an eighth and drains the pages above it.
    def ev(c, ts, kind, pfn):
        if kind == "alloc":
            return _line(c, ts, "mm_page_alloc", f"page=00000000deadbeef pfn={pfn:#x} order=0 migratetype=1 "
                         "gfp_flags=GFP_HIGHUSER_MOVABLE")
        return _line(c, ts, "mm_page_free", f"page=00000000deadbeef pfn={pfn:#x} order=0")

    text = "".join(ev(c, 1.0 + i * 1e-4, "alloc", 0x10000 + 2 * i + c) for i in range(3000) for c in (0, 1))
    text += "".join(ev(c, 1.6 + i * 1e-4, "free", 0x10000 + 2 * i + c) for i in range(3000) for c in (0, 1))
    text += "".join(ev(c, 3.5, "alloc", 0x20000 + c) for c in (0, 1))
    zi = read_zoneinfo(_tiny_zoneinfo())
    pti = read_pagetypeinfo(_tiny_pagetypeinfo())
    results = {}
    for timer in (None, 1.0):
        m = Machine(_tiny())
        r = replay(io.BytesIO(text.encode()), {"x": m}, start=StartState(zi, pti, timer=timer, pcp_prepass=0))
        results[timer] = (r, m.pcp_state("Normal", 0)["high"], m.stats()["PCP_DECAY"])
        m.check()
    (r, high, decays), (plain, plain_high, plain_decays) = results[1.0], results[None]
    assert r.timer == {"every": 1.0, "runs": [2, 2]} and plain.timer is None
    assert decays == 4 and plain_decays == 0              # one populated zone, two runs per CPU
    assert high < plain_high
    assert r.policies["x"]["total"]["drained_pages"] > plain.policies["x"]["total"]["drained_pages"]


def test_kernel_work_the_capture_recorded_is_counted_not_replayed():
    # A vmalloc area and two compaction runs with no ends recorded between the
    # allocations: reported, and the replay's figures are those of the trace without them.
    alloc = [_line(0, 1.0 + i * 1e-3, "mm_page_alloc", f"page=00000000deadbeef pfn={0x10000 + i:#x} order=0 "
                   "migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE") for i in range(4)]
    work = [_line(1, 1.0005, "mm_compaction_begin", "zone_start=0x1000 migrate_pfn=0x1000 free_pfn=0x3fe00 "
                  "zone_end=0x40000, mode=async"),
            _line(0, 1.0025, "mm_compaction_begin", "zone_start=0x1000 migrate_pfn=0x1000 free_pfn=0x3fe00 "
                  "zone_end=0x40000, mode=sync"),
            _line(1, 1.0026, "alloc_vmap_area", "va_start: 18446683600665329664 size=20480 align=16384 "
                  "vstart=0xffffc90000000000 vend=0xffffe8ffffffffff failed=0")]
    text = "".join(alloc[:1] + work[:1] + alloc[1:3] + work[1:] + alloc[3:])
    zi, pti = read_zoneinfo(_tiny_zoneinfo()), read_pagetypeinfo(_tiny_pagetypeinfo())
    why = {"alloc_vmap_area": "stacks"}
    r = replay(io.BytesIO(text.encode()), {"x": Machine(_tiny())}, start=StartState(zi, pti, pcp_prepass=0,
                                                                                   kernel_work=why))
    assert r.untraced["kernel_work"] == [{"event": "alloc_vmap_area", "runs": 1, "why": "stacks"}]
    assert r.untraced["compaction"] == {"runs": 2, "drains": 0, "replayed": False}
    text_out = replay_text(r)
    assert "1 alloc_vmap_area in the trace, not replayed: stacks" in text_out
    assert "compact_zone ran 2 times: its drains of the CPU's pcp not replayed" in text_out
    plain = replay(io.BytesIO("".join(alloc).encode()), {"x": Machine(_tiny())},
                   start=StartState(zi, pti, pcp_prepass=0))
    assert r.policies["x"]["total"] == plain.policies["x"]["total"] and plain.untraced["kernel_work"] == []


def test_compactions_drains_of_the_cpus_pcp_are_replayed():
    # CPU 0 frees 100 pages (they stay on its pcp), then compacts: a migrated page's
    # free and the kernel's drain of the whole pcp (lru_add_drain_cpu_zone), then the end.
    gfp = "GFP_HIGHUSER_MOVABLE"
    lines = [_line(0, 1.0 + i * 1e-6, "mm_page_alloc", f"page=00000000deadbeef pfn={0x10000 + i:#x} order=0 "
                   f"migratetype=1 gfp_flags={gfp}") for i in range(101)]
    lines += [_line(0, 2.0 + i * 1e-6, "mm_page_free", f"page=00000000deadbeef pfn={0x10000 + i:#x} order=0")
              for i in range(100)]
    lines += [_line(0, 3.0, "mm_compaction_begin", "zone_start=0x1 migrate_pfn=0x1 free_pfn=0x3fe00 "
                    "zone_end=0x40000, mode=sync"),
              _line(0, 3.1, "mm_page_free", "page=00000000deadbeef pfn=0x10064 order=0")]
    lines += [_line(0, 3.2, "mm_page_pcpu_drain", f"page=00000000deadbeef pfn={0x10000 + i:#x} order=0 "
                    "migratetype=1") for i in range(101)]
    lines += [_line(0, 3.3, "mm_compaction_end", "zone_start=0x1 migrate_pfn=0x1 free_pfn=0x3fe00 "
                    "zone_end=0x40000, mode=sync status=complete")]
    text = "".join(lines)
    zi, pti = read_zoneinfo(_tiny_zoneinfo()), read_pagetypeinfo(_tiny_pagetypeinfo())
    runs = {}
    for compaction in (False, True):
        m = Machine(_tiny())
        runs[compaction] = replay(io.BytesIO(text.encode()), {"x": m},
                                  start=StartState(zi, pti, pcp_prepass=0, compaction=compaction)), m
    (off, m_off), (on, m_on) = runs[False], runs[True]
    zone = m_on.populated_zones[-1].name
    assert m_on.pcp_state(zone, 0)["count"] == 0 < m_off.pcp_state(zone, 0)["count"]
    assert on.untraced["compaction"] == {"runs": 1, "drains": 1, "replayed": True}
    cpu0 = on.comparison()["per_cpu"][0]
    assert cpu0["drain_calls"]["emulated"] == 1 and cpu0["drained_pages"]["emulated"] >= 101
    assert "1 drains of a CPU's own pcp inside compact_zone" in replay_text(on)


def test_kswapd_runs_hold_zone_reclaim_active_from_the_wake_to_kswapds_last_event():
    # CPU 0 frees 800 pages in four bursts of 200: (a) before kswapd wakes; (b) while
    # balance_pgdat runs (kswapd0 frees pages of its own on CPU 1 before and after it);
    # (c) after kswapd's last event, while it naps before its sleep; (d) after a wake
    # that found the node balanced at once (no event of kswapd's before the next
    # wake). Under ZONE_RECLAIM_ACTIVE a free drains above 4 * batch (nr_pcp_high), so
    # the emulator drains in burst (b) only.
    gfp = "GFP_HIGHUSER_MOVABLE"

    def kswapd(ts, event, fields):
        return f"         kswapd0-45      [001] .....  {ts:.6f}: {event}: {fields}\n"

    lines = [_line(0, 1.0 + i * 1e-6, "mm_page_alloc", f"page=00000000deadbeef pfn={0x10000 + i:#x} order=0 "
                   f"migratetype=1 gfp_flags={gfp}") for i in range(810)]
    burst = [[_line(0, t + i * 1e-6, "mm_page_free", f"page=00000000deadbeef pfn={0x10000 + 200 * b + i:#x} order=0")
              for i in range(200)] for b, t in enumerate((2.0, 3.0, 4.0, 6.0))]
    reclaim = [kswapd(t, "mm_page_free", f"page=00000000deadbeef pfn={0x10000 + 800 + i:#x} order=0")
               for i, t in enumerate((2.9, 3.9))]
    text = "".join(lines + burst[0] + [kswapd(2.5, "mm_vmscan_kswapd_wake", "nid=0 order=0"), reclaim[0]]
                   + burst[1] + [reclaim[1]] + burst[2] + [kswapd(4.5, "mm_vmscan_kswapd_sleep", "nid=0"),
                                                           kswapd(5.0, "mm_vmscan_kswapd_wake", "nid=0 order=0")]
                   + burst[3] + [kswapd(7.0, "mm_vmscan_kswapd_sleep", "nid=0")])
    zi, pti = read_zoneinfo(_tiny_zoneinfo()), read_pagetypeinfo(_tiny_pagetypeinfo())
    drains = {}
    for on in (False, True):
        out = io.StringIO()
        r = replay(io.BytesIO(text.encode()), {"x": Machine(_tiny())}, emit_trace=out,
                   start=StartState(zi, pti, pcp_prepass=0, kswapd=on))
        drains[on] = [float(line.split()[3].rstrip(":")) for line in out.getvalue().splitlines()
                      if "mm_page_pcpu_drain" in line]
    assert r.untraced["kswapd"] == {"wakes": 2, "sleeps": 2, "replayed": True, "held": 1, "balanced": 1}
    assert drains[False] == [] and drains[True] and all(3.0 <= t < 3.9 for t in drains[True])
    assert "kswapd ran balance_pgdat 2 times (2 sleeps): ZONE_RECLAIM_ACTIVE set for 1 runs, each from its " \
           "wake to kswapd's last event before the next wake or sleep; 1 found the node balanced at once" \
        in replay_text(r)


def _tiny_zoneinfo():
    m = Machine(_tiny())
    return m.zoneinfo()


def _tiny_pagetypeinfo():
    m = Machine(_tiny())
    return m.pagetypeinfo()


def _events(rows):
    ev = np.zeros(len(rows), EVENT_DTYPE)
    for i, (kind, cpu, order, refill) in enumerate(rows):
        ev[i]["kind"], ev[i]["cpu"], ev[i]["order"], ev[i]["percpu_refill"] = kind, cpu, order, refill
        ev[i]["pfn"] = 0x1000 + i
    return ev


def test_traced_pcp_counts_after_events_not_yet_taken_in():
    zi = read_zoneinfo(_tiny_zoneinfo())              # count 0 on both CPUs
    counts = kstate.TracedPcpCounts(zi, 2, np.ones(11, bool))
    ev = _events([(MM_PAGE_FREE, 0, 0, -1)] * 3 + [(MM_PAGE_ALLOC, 0, 0, -1), (MM_PAGE_PCPU_DRAIN, 1, 1, -1)])
    assert counts.count_after(ev, "Normal", 0) == 2 and counts.count_after(ev, "Normal", 1) == -2
    assert counts.count("Normal", 0) == 0             # nothing taken in
    counts.add(ev)
    assert counts.count("Normal", 0) == 2 and counts.count_after(ev[:1], "Normal", 0) == 3
    assert counts.count_after(ev, "Normal", 2) is None and counts.count_after(ev, "DMA", 0) is None


def test_figures_read_off_events_count_runs_and_implied_zone_lock():
    R, D, A, F, X = MM_PAGE_ALLOC_ZONE_LOCKED, MM_PAGE_PCPU_DRAIN, MM_PAGE_ALLOC, MM_PAGE_FREE, MM_PAGE_ALLOC_EXTFRAG
    pcp_orders = np.array([o <= 3 or o == 9 for o in range(11)])
    fig = _EventFigures(2, pcp_orders)
    fig.add(_events([(R, 0, 0, 1), (R, 1, 0, 1), (X, 0, 0, -1), (R, 0, 0, 1), (A, 0, 0, -1),   # one refill call per CPU
                     (F, 0, 0, -1), (D, 0, 0, -1), (D, 0, 1, -1),                              # one drain call
                     (R, 0, 4, 0),                                                             # buddy allocation
                     (F, 1, 5, -1),                                                            # free_one_page
                     (D, 1, 0, -1)]))
    fig.add(_events([(D, 1, 0, -1), (VMSTAT_UPDATE, 1, -1, -1), (D, 1, 0, -1)]))             # run across batches
    cpu0, cpu1 = fig.per_cpu()
    assert (cpu0["refill_blocks"], cpu0["refill_calls"], cpu0["drain_calls"], cpu0["drained_pages"]) == (2, 1, 1, 3)
    assert (cpu0["fallbacks"], cpu0["buddy_allocs"], cpu0["nonpcp_frees"], cpu0["zone_lock"]) == (1, 1, 0, 3)
    assert (cpu1["refill_calls"], cpu1["drain_calls"], cpu1["nonpcp_frees"], cpu1["zone_lock"]) == (1, 2, 1, 4)
    # The emulator's events: a run never spans two ops.
    emu = _EventFigures(1, pcp_orders)
    emu.add(_events([(D, 0, 0, -1), (D, 0, 0, -1), (D, 0, 0, -1)]), np.array([4, 4, 5]))
    assert emu.per_cpu()[0]["drain_calls"] == 2


def _pcp_list_events():
    # CPU 0: five allocations off its Movable order-0 list, then a refill; CPU 1: six
    # off its Unmovable one, and between them a free of a page whose block shows Movable.
    pfn = 0x8000
    mk = lambda kind, cpu, mt, refill=-1: (kind, cpu, pfn, 0, mt, refill)   # noqa: E731
    mk1 = lambda kind, cpu, mt: (kind, cpu, 0x9000, 0, mt, -1)               # noqa: E731
    rows = ([mk(MM_PAGE_ALLOC, 0, 1)] * 5 + [mk(MM_PAGE_ALLOC_ZONE_LOCKED, 0, 1, 1)] * 3
            + [mk1(MM_PAGE_ALLOC, 1, 0)] * 4 + [mk(MM_PAGE_FREE, 1, 0)] + [mk1(MM_PAGE_ALLOC, 1, 0)] * 2)
    ev = np.zeros(len(rows), EVENT_DTYPE)
    for i, (kind, cpu, p, order, mt, refill) in enumerate(rows):
        ev[i]["kind"], ev[i]["cpu"], ev[i]["pfn"], ev[i]["order"] = kind, cpu, p, order
        ev[i]["migratetype"], ev[i]["percpu_refill"] = mt, refill
    ev["migratetype"][ev["kind"] == MM_PAGE_FREE] = -1
    return ev


def test_pages_left_over_past_lists_the_trace_showed_exactly_stay_off_the_pcp():
    # CPU 0's lists of orders 0-3 all shown exactly empty at the start, so its pages
    # wait on the THP list (the first of the chain the trace did not show): 17 blocks
    # of its 8,829 pages; the 125 left over were on no list when the trace began (the
    # count moved after zoneinfo was read), so none is put on Movable order 0.
    zi = read_zoneinfo(CAP / "before-zoneinfo")
    m = Machine(pcpemu.KernelConfig.from_zoneinfo(zi, "v6.18"))
    zones = kstate.seed_zones(m, zi, read_pagetypeinfo(CAP / "before-pagetypeinfo"))
    small = {m.order_to_pindex(t, o) for t in ("Unmovable", "Movable", "Reclaimable") for o in range(4)}
    seed = kstate.seed_pcp_lists(m, zi, zones, {}, {("Normal", 0): small})
    cpu0 = next(p for p in seed.zones["Normal"]["pcp"] if p["cpu"] == 0)
    thp = m.order_to_pindex("Movable", 9)
    assert cpu0["rest"] == {"pindex": thp, "pages": 17 * 512} and cpu0["lists"] == {thp: 17}
    assert (cpu0["count"], cpu0["shown_count"]) == (8829 - 125, 8829)
    assert m.pcp_state("Normal", 0)["count"] == 8829 - 125
    assert m.pcp_list("Normal", 0, m.order_to_pindex("Movable", 0)) == []
    assert "zone Normal cpu 0: 125 of the 8829 pcp pages zoneinfo printed are left off" in " ".join(seed.notes)
    assert "(Movable order 9)" in " ".join(seed.notes)
    # CPU 1, with no list shown: all 7,621 wait on Movable order 0, the chain's first.
    cpu1 = next(p for p in seed.zones["Normal"]["pcp"] if p["cpu"] == 1)
    assert cpu1["count"] == cpu1["shown_count"] == 7621
    m.check()


def test_pcp_lists_are_read_off_the_trace():
    m = Machine(_tiny())
    zi = read_zoneinfo(m.zoneinfo())
    lists = kstate.PcpLists(m, zi)
    ev = _pcp_list_events()
    lists.add(ev[:6])
    lists.add(ev[6:])
    got = lists.lists()
    movable0, unmovable0 = m.order_to_pindex("Movable", 0), m.order_to_pindex("Unmovable", 0)
    assert got[("Normal", 0)] == {movable0: 5}
    assert lists.exact_lists() == {("Normal", 0): {movable0}}
    # CPU 1: never refilled, its Unmovable list dipped by 6; the free between went to
    # Movable order 0 (its block shows Movable: CPU 0 allocated from it as Movable).
    assert got[("Normal", 1)] == {unmovable0: 6}


def test_pcp_pages_move_to_the_lists_the_trace_shows_them_on():
    m = Machine(_tiny())
    zi = read_zoneinfo(m.zoneinfo())
    # Past the read-ahead: CPU 0 has 20 pages waiting on Movable order 0, CPU 1 five.
    movable0 = m.order_to_pindex("Movable", 0)
    lists = kstate.PcpLists(m, zi)
    lists.stream_from(kstate.Seed({"Normal": {"pcp": [{"cpu": 0, "rest": {"pindex": movable0, "pages": 20}},
                                                      {"cpu": 1, "rest": {"pindex": movable0, "pages": 5}}]}}, []))
    ev = _pcp_list_events()
    lists.learn(ev)
    first, at1, _, _ = lists.reveals(ev[:6])
    second, at2, _, _ = lists.reveals(ev[6:])
    movable, unmovable, reclaimable = 1, 0, 2
    from_to = lambda ops: [(int(o["cpu"]), int(o["gfp"]) >> 4 & 15, int(o["gfp"]) >> 8 & 15,   # noqa: E731
                            bool(o["gfp"] & PCP_REVEAL_ALL)) for o in ops]
    # CPU 0 waits on Movable order 0, whose five pages the trace used before the refill
    # (event 5) showed it empty: the other 15 move on to Reclaimable, before the refill.
    assert from_to(first) == [(0, movable, reclaimable, True)] and at1.tolist() == [5]
    # CPU 1: its Unmovable list dipped by 6, the free between went to Movable order 0
    # (its block shows Movable): five reveals, as many as CPU 1 had pages.
    assert from_to(second) == [(1, movable, unmovable, False)] * 5
    assert at2.tolist() == [2, 3, 4, 5, 7]
    assert (second["op"] == OP_PCP_REVEAL).all() and (second["order"] == 0).all()
    assert lists.left[lists.pool.names.index("Normal")].tolist() == [15, 0]


def test_a_reveal_moves_starting_pages_and_keeps_the_pcp_count():
    m, zi, _ = _seeded()
    count = m.pcp_state("Normal", 0)["count"]
    movable0, unmovable0 = m.order_to_pindex("Movable", 0), m.order_to_pindex("Unmovable", 0)
    thp = m.order_to_pindex("Movable", 9)
    normal = ZONE_NAMES.index("Normal")
    ops = np.zeros(3, OP_DTYPE)
    ops["op"], ops["cpu"] = OP_PCP_REVEAL, 0
    ops["gfp"][0] = pcp_reveal_gfp(normal, 1, 0)             # one page to Unmovable order 0
    ops["gfp"][1], ops["order"][1] = pcp_reveal_gfp(normal, 1, 1), 9     # a THP block, paid with 512 pages
    m.run(ops[:2])
    assert m.pcp_state("Normal", 0)["count"] == count
    assert len(m.pcp_list("Normal", 0, unmovable0)) == 1 and len(m.pcp_list("Normal", 0, thp)) == 1
    assert len(m.pcp_list("Normal", 0, movable0)) == count - 1 - 512
    m.check()
    ops["gfp"][2] = pcp_reveal_gfp(normal, 1, 2, True)       # every page left to Reclaimable
    m.run(ops[2:])
    assert m.pcp_list("Normal", 0, movable0) == []
    assert len(m.pcp_list("Normal", 0, m.order_to_pindex("Reclaimable", 0))) == count - 1 - 512
    assert m.pcp_state("Normal", 0)["count"] == count
    m.check()
    bad = ops[:1].copy()
    bad["gfp"] = pcp_reveal_gfp(normal, 3, 0)
    with pytest.raises(pcpemu.OpStreamError, match="migratetype"):
        m.run(bad)
    bad["gfp"], bad["order"] = pcp_reveal_gfp(normal, 1, 0), 11
    with pytest.raises(pcpemu.OpStreamError, match="order"):
        m.run(bad)
    bad["gfp"], bad["order"] = pcp_reveal_gfp(normal, 1, 0) | 1 << 20, 0
    with pytest.raises(pcpemu.OpStreamError):
        m.run(bad)
    assert m.pcp_state("Normal", 0)["count"] == count        # refused streams change nothing


def test_a_revealed_page_stands_in_a_pageblock_of_its_lists_type_and_goes_back_there_when_freed():
    # The waiting pages sit on Movable order 0 in the owner's pageblocks of any type. A
    # page the trace shows on Unmovable order 0 was there because its pageblock was
    # Unmovable: the reveal puts an owner's page of an Unmovable pageblock there (the
    # waiting list's oldest goes back to the owner), so a GFP_KERNEL allocation of it
    # and its free leave it on the Unmovable list, as the kernel's free did.
    m, zi, _ = _seeded()
    count = m.pcp_state("Normal", 0)["count"]
    movable0, unmovable0 = m.order_to_pindex("Movable", 0), m.order_to_pindex("Unmovable", 0)
    waiting = m.pcp_list("Normal", 0, movable0)
    assert m.pageblock_migratetype(waiting[-1]) != "Unmovable"
    ops = np.zeros(1, OP_DTYPE)
    ops["op"], ops["cpu"], ops["gfp"] = OP_PCP_REVEAL, 0, pcp_reveal_gfp(ZONE_NAMES.index("Normal"), 1, 0)
    m.run(ops)
    (pfn,) = m.pcp_list("Normal", 0, unmovable0)
    assert m.pageblock_migratetype(pfn) == "Unmovable"
    assert m.pcp_list("Normal", 0, movable0) == waiting[:-1]          # the oldest went back
    assert m.pcp_state("Normal", 0)["count"] == count
    assert m.alloc_pages("GFP_KERNEL", 0, 0) == pfn
    m.free_pages(pfn, 0, 0)
    assert m.pcp_list("Normal", 0, unmovable0) == [pfn]
    m.check()


def test_an_untraced_free_with_no_owner_page_of_its_type_retypes_a_pageblock_of_the_owners_alone():
    # The dumps give how many pageblocks each type has, not which; when the owner has no
    # page left in a pageblock of the type the trace shows for a freed page's pageblock,
    # a pageblock of the owner's pages alone takes that type, so the free goes to that
    # type's pcp list as the kernel's did. Only when none is left does it take another type.
    m, zi, _ = _seeded()
    reclaimable = 2
    assert len(m.take_untraced("Normal", reclaimable, 0, 10 ** 7, kstate.UNTRACED, np.zeros(1, np.int64))) > 0
    pool = kstate.UntracedPool(zi, ["Normal"])
    real = np.array([int(zi["zones"][2]["start_pfn"]) + 4096], np.int64)      # a Normal pfn
    pool.block_mt[real >> 9] = reclaimable
    types = m.pageblock_types()
    got, (pfn,) = pool.take([m], real, np.zeros(1, np.int64))
    assert got.tolist() == [True] and pool.retyped == 1 and pool.other_type == 0
    assert m.pageblock_migratetype(int(pfn[0])) == "Reclaimable"
    changed = np.flatnonzero(m.pageblock_types() != types)
    assert changed.tolist() == [int(pfn[0]) >> 9]                     # that one pageblock, nothing else
    m.free_pages(int(pfn[0]), 0, 0)
    assert int(pfn[0]) in m.pcp_list("Normal", 0, m.order_to_pindex("Reclaimable", 0))
    m.check()
    # The next free of that type takes the rest of the retyped pageblock: no new claim.
    got, (pfn2,) = pool.take([m], real, np.zeros(1, np.int64))
    assert pool.retyped == 1 and int(pfn2[0]) >> 9 == int(pfn[0]) >> 9


def test_a_claimed_pageblock_is_one_of_a_pcp_type():
    # A highatomic (or CMA, or isolated) pageblock keeps its type even when the owner's
    # pages alone make it: the claim takes the next one of a type with pcp lists.
    m = Machine(_tiny())
    types = np.zeros(m.config.zone_layout()[0].managed >> 9, np.uint8)     # Unmovable
    types[0] = 3                                                            # HighAtomic
    m.seed_zone("Normal", types, np.zeros(0, np.int64), np.zeros(0, np.int8), kstate.UNTRACED)
    pfn = m.claim_untraced_pageblock("Normal", 1, kstate.UNTRACED, np.zeros(1, np.int64))
    assert m.pageblock_migratetype(pfn) == "Movable" and pfn >> 9 == (m.config.zone_layout()[0].free_start >> 9) + 1
    assert m.pageblock_types()[0] == 3 and (m.pageblock_types() == 1).sum() == 1
    m.check()


def test_reveals_out_of_a_bigger_list_pay_a_whole_block_once_they_add_up_to_it():
    # Order-3 blocks revealed out of the THP list: each is the owner's, and a THP block
    # goes back only with the 64th, so the count is what /proc showed once the blocks
    # add up to a THP block and at most 504 pages above it before.
    m, zi, _ = _seeded()
    count = m.pcp_state("Normal", 0)["count"]
    thp, order3 = m.order_to_pindex("Movable", 9), m.order_to_pindex("Movable", 3)
    normal = ZONE_NAMES.index("Normal")
    ops = np.zeros(2 + 64, OP_DTYPE)
    ops["op"], ops["cpu"] = OP_PCP_REVEAL, 0
    ops["gfp"][:2], ops["order"][:2] = pcp_reveal_gfp(normal, 1, 1), 9          # two THP blocks
    ops["gfp"][2:], ops["order"][2:] = pcp_reveal_gfp(normal, 1, 1, False, 9), 3
    m.run(ops[:2 + 63])
    assert len(m.pcp_list("Normal", 0, thp)) == 2 and len(m.pcp_list("Normal", 0, order3)) == 63
    assert m.pcp_state("Normal", 0)["count"] == count + 63 * 8
    m.run(ops[2 + 63:])
    assert len(m.pcp_list("Normal", 0, thp)) == 1 and len(m.pcp_list("Normal", 0, order3)) == 64
    assert m.pcp_state("Normal", 0)["count"] == count
    m.check()


def test_relisting_moves_the_oldest_blocks_and_keeps_the_count():
    # Machine.pcp_untraced_relist: pages a refill shows were never on the list the
    # replay put them on move, oldest first, to the Unmovable list of the order; a page
    # whose emulated pageblock is of another type leaves an owner's page of an
    # Unmovable pageblock in its place (as a reveal does).
    m, zi, _ = _seeded()
    count = m.pcp_state("Normal", 0)["count"]
    movable0, unmovable0 = m.order_to_pindex("Movable", 0), m.order_to_pindex("Unmovable", 0)
    before = m.pcp_list("Normal", 0, movable0)
    assert m.pcp_untraced_relist("Normal", 0, "Movable", 0, 3) == 3
    moved = m.pcp_list("Normal", 0, unmovable0)
    assert len(moved) == 3 and {m.pageblock_migratetype(p) for p in moved} == {"Unmovable"}
    assert m.pcp_list("Normal", 0, movable0) == before[:-3]
    assert m.pcp_state("Normal", 0)["count"] == count
    assert m.pcp_untraced_relist("Normal", 0, "Movable", 9, 1) == 0         # an empty list: none
    m.check()
    with pytest.raises(pcpemu.PcpemuError):
        m._core.pcp_untraced_relist(ZONE_NAMES.index("Normal"), 0, movable0, 5, 1)


def test_pcp_pages_past_a_short_read_ahead_are_revealed_in_the_replay():
    # The small capture with a read-ahead of 20 k of its events: the lists its later
    # events show get their starting pages by pcp_reveal ops; the machine stays sound.
    zi = read_zoneinfo(CAP / "before-zoneinfo")
    m = Machine(pcpemu.KernelConfig.from_zoneinfo(zi, "v6.18"))
    start = StartState(zi, read_pagetypeinfo(CAP / "before-pagetypeinfo"), pcp_prepass=20_000)
    r = replay(CAP / "trace.txt.xz", {"x": m}, start=start)
    m.check()
    assert r.untraced["pcp_reveals"] > 0
    assert f"{r.untraced['pcp_reveals']:,} moves of starting pcp pages" in replay_text(r)
    normal = [z for z in zi["zones"] if z["name"] == "Normal"][0]
    assert [p["count"] for p in r.start["zones"]["Normal"]["pcp"]] == [p["count"] for p in normal["pagesets"]]


def test_check_flags_figures_outside_the_tolerance():
    cell = lambda k, e: {"kernel": k, "emulated": e, "ratio": e / k if k else None}   # noqa: E731
    row = lambda k, e: {f: cell(k, e) for f in FIGURES}                            # noqa: E731
    comp = {"per_cpu": [dict(cpu=0, **row(2000, 2150)), dict(cpu=1, **row(10, 40))], "total": row(2010, 2190)}
    assert check(comp, 0.10, 0.10) == []                    # cpu 1 has too few refill blocks to be held to it
    bad = check(comp, 0.05, 0.10)
    assert len(bad) == 4 and all(b.startswith("cpu 0: ") for b in bad)
    assert len(check(comp, 0.10, 0.05)) == 4
    assert len(check(comp, 0.10, 0.10, min_blocks=10)) == 4      # now cpu 1 counts
    assert check(comp, 0.01, 0.01, min_blocks=3000) == []       # nothing logged enough
    assert "kernel against emulator" in comparison_text(comp)


def test_cli_replays_a_capture_directory_and_checks(capsys, cap_result):
    expected = check(cap_result.comparison(), 9.99, 9.99)
    assert cli.main(["replay", str(CAP), "--check", "999"]) == (3 if expected else 0)
    out = capsys.readouterr().out
    assert "kernel against emulator" in out and "rules: preset v6.18" in out
    # v6.10's rules (free_high at batch, no claim-or-steal) miss this 6.18 capture.
    assert cli.main(["replay", str(CAP), "--preset", "v6.10", "--check", "0.001", "--check-min-blocks", "0"]) == 3
    assert "check: policy split: cpu 1: refill_blocks" in capsys.readouterr().err
    assert cli.main(["replay", str(CAP), "--json", "--check", "999"]) == (3 if expected else 0)
    doc = json.loads(capsys.readouterr().out)
    assert doc["check"]["failures"] == [f"policy split: {line}" for line in expected]
    assert doc["start"]["zones"]["Normal"]["pcp"]
    assert cli.main(["replay", str(CAP), "--cpus", "4"]) == 1
    assert "a capture directory gives the machine; drop --cpus" in capsys.readouterr().err


def test_check_says_whether_the_kernels_figure_lies_in_the_pin_spread():
    cell = {"kernel": 100, "emulated": 120, "ratio": 1.2}
    row = {f: dict(cell) for f in FIGURES}
    comp = {"per_cpu": [{"cpu": 0, **row}], "total": dict(row)}
    comp["per_cpu"][0]["refill_blocks"] = comp["total"]["refill_blocks"] = {"kernel": 5000, "emulated": 5000,
                                                                             "ratio": 1.0}
    rng = {f: {"low": 110, "high": 130} for f in FIGURES}
    spread = {"per_cpu": [{"cpu": 0, **rng}], "total": {**rng, "drain_calls": {"low": 95, "high": 125}}}
    lines = check(comp, 0.10, 0.05, spread=spread)
    assert len(lines) == 6 and all("110-130 with the pins moved: the kernel's outside" in ln
                                   for ln in lines if not ln.startswith("total: drain_calls"))
    assert [ln for ln in lines if ln.startswith("total: drain_calls")] == [
        "total: drain_calls emulated 120 against the kernel's 100 (1.200, tolerance 5%); 95-125 with the pins "
        "moved: the kernel's inside"]
    assert check(comp, 0.10, 0.05) == [ln.split(";")[0] for ln in lines]
    assert "drain_calls 95-125 (kernel 100)" in spread_text(spread, 2, comp)


def test_pin_spread_replays_around_the_measured_pin(cap_result):
    # The small capture's kernel never drained: no pin, so no figure moves.
    spread = pin_spread(CAP, 1, measured=cap_result)
    assert spread["offsets"] == [-1, 0, 1] and list(spread["policies"]) == list(cap_result.policies)
    comp = cap_result.comparison()
    s = spread["policies"]["split"]
    for f in FIGURES:
        assert s["total"][f] == {"low": comp["total"][f]["emulated"], "high": comp["total"][f]["emulated"]}
        assert [r[f]["low"] for r in s["per_cpu"]] == [r[f]["emulated"] for r in comp["per_cpu"]]
    for bad in (0, 65):
        with pytest.raises(pcpemu.ConfigError, match="1 to 64 pages"):
            pin_spread(CAP, bad)
    with pytest.raises(pcpemu.ConfigError, match="no pin"):
        pin_spread(CAP, 1, from_boot=True)
    with pytest.raises(pcpemu.ConfigError, match="no pin"):
        replay_capture(CAP, from_boot=True, pin_offset=2)
    with pytest.raises(pcpemu.ConfigError, match="drop emit_trace, pin_offset"):
        pin_spread(CAP, 1, pin_offset=1, emit_trace=io.StringIO())


def test_cli_pin_spread(capsys, cap_result):
    assert cli.main(["replay", str(CAP), "--json", "--pin-spread", "1"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["pin_spread"]["offsets"] == [-1, 0, 1] and doc["untraced"]["pin_offset"] == 0
    assert cli.main(["replay", str(CAP), "--pin-spread", "1"]) == 0
    assert "with each first-drain pin moved by up to 1 pages (policy split):" in capsys.readouterr().out
    assert cli.main(["replay", str(CAP), "--from-boot", "--pin-spread", "1"]) == 1
    assert "give a capture directory, without --from-boot" in capsys.readouterr().err
    # The 2N replays of a spread show their progress too: three replays, three bars run to 100%.
    assert cli.main(["replay", str(CAP), "--progress"]) == 0
    one = capsys.readouterr().err.count("100% ")
    assert cli.main(["replay", str(CAP), "--pin-spread", "1", "--progress"]) == 0
    assert one > 0 and capsys.readouterr().err.count("100% ") == 3 * one
    # A bad N fails before any replay runs: no progress, no output.
    assert cli.main(["replay", str(CAP), "--pin-spread", "0", "--progress"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err == "pcpemu replay: error: a pin spread moves the pins by 1 to 64 pages, not 0\n"


def test_fidelity_on_capture_gives_the_comparison(cap_result):
    d = fidelity_on_capture(CAP)
    assert d["preset"] == "v6.18" and d["figures"] == list(FIGURES)
    assert d["comparison"] == cap_result.comparison()
    assert d["pin_spread"] == pin_spread(CAP, 2, measured=cap_result)["policies"]["split"]
    assert fidelity_on_capture(CAP, pin_pages=0)["pin_spread"] is None
    assert [r["cpu"] for r in d["comparison"]["per_cpu"]] == [0, 1]


def test_a_capture_replays_with_the_rules_of_its_kernels_release(tmp_path, cap_result):
    # The same capture as if a 6.12.3 kernel had made it: the v6.18 preset at kernel
    # v6.12.3, without the rule changes of v6.13 on; named, and said.
    d = tmp_path / "cap"
    d.mkdir()
    for f in CAP.iterdir():
        (d / f.name).write_bytes(f.read_bytes())
    info = json.loads((d / "capture.json").read_text())
    (d / "capture.json").write_text(json.dumps({**info, "kernel_release": "6.12.3-arch1"}))
    r = replay_capture(d)
    assert r.config["kernel"] == "v6.12.3" and r.config["thp_lists"] == "split"
    assert "rules: preset v6.18 (traced kernel 6.12.3-arch1)" in r.config_notes
    assert "rules: the v6.18 preset at kernel v6.12.3: the rule changes after v6.12.3 are left out" in r.config_notes
    # The capture's own 6.18.44 carries a backport pcpemu models (decay_batched).
    assert cap_result.config["kernel"] == "v6.18.44"
    assert [n for n in cap_result.config_notes if "at kernel" in n] == [
        "rules: the v6.18 preset at kernel v6.18.44, with the stable backports pcpemu models (fc4b909c368f); "
        "its other stable changes are not modelled"]
    named = replay_capture(d, preset="v6.10")       # a preset named is taken as it is
    assert named.config["kernel"] == "v6.10" and not [n for n in named.config_notes if "at kernel" in n]
    # A 7.x kernel: v6.18's structs at 6.18.7 with v6.19's batched free drains on top, said.
    (d / "capture.json").write_text(json.dumps({**info, "kernel_release": "7.2.1-200.fc44"}))
    later = replay_capture(d)
    assert later.config["kernel"] == "v6.18.7" and tuple(later.config["later_changes"]) == ("91e691296646",)
    assert any("with the later changes 91e691296646 applied" in n for n in later.config_notes)
    info["kernel_release"] = "4.19.0"
    (d / "capture.json").write_text(json.dumps(info))
    with pytest.raises(pcpemu.ConfigError, match="oldest is v5.14: give --preset"):
        replay_capture(d)


def test_pagetypeinfo_reads_capped_counts():
    text = ("Page block order: 9\nPages per block:  512\n\n"
            "Free pages count per migrate type at order       0      1\n"
            "Node    0, zone   Normal, type      Movable >100000     17 \n\n"
            "Number of blocks type     Unmovable      Movable\n"
            "Node 0, zone   Normal            3          500 \n")
    pti = read_pagetypeinfo(text)
    assert pti == {"pageblock_order": 9, "zones": {"Normal": {"free": {"Movable": [100000, 17]},
                                                             "blocks": {"Unmovable": 3, "Movable": 500}}}}


def test_vmstat_update_lines_read_and_write_back():
    text = ("     kworker/1:0-3738    [001] .....   631.107444: workqueue_execute_start: "
            "work struct 0000000024545783: function vmstat_update\n"
            "     kworker/0:2-289     [000] .....   634.115439: workqueue_execute_start: "
            "work struct 000000002dba6dd1: function vmstat_shepherd\n")
    ev = np.concatenate(list(read_event_batches(io.BytesIO(text.encode()), strict=True)))
    assert ev["kind"].tolist() == [VMSTAT_UPDATE] and ev["cpu"].tolist() == [1]
    out = io.StringIO()
    write_ftrace(ev, out, header=False)
    back = np.concatenate(list(read_event_batches(io.BytesIO(out.getvalue().encode()), strict=True)))
    assert back["kind"].tolist() == [VMSTAT_UPDATE] and back["timestamp"].tolist() == [631.107444]


def test_kswapd_lines_read_and_write_back():
    from pcpemu.kernel.ftrace import KSWAPD_SLEEP, KSWAPD_WAKE, TraceStats
    text = ("         kswapd0-45      [000] ..... 51533.662650: mm_vmscan_kswapd_wake: nid=1 order=9\n"
            "         kswapd0-45      [001] ..... 51533.700000: mm_vmscan_kswapd_sleep: nid=1\n"
            "         kswapd0-45      [001] ..... 51533.800000: mm_vmscan_kswapd_sleep: node=1\n")
    stats = TraceStats()
    ev = np.concatenate(list(read_event_batches(io.BytesIO(text.encode()), stats=stats)))
    assert ev[["kind", "cpu", "pfn", "order"]].tolist() == [(KSWAPD_WAKE, 0, 1, 9), (KSWAPD_SLEEP, 1, 1, -1)]
    assert stats.events == {"mm_vmscan_kswapd_wake": 1, "mm_vmscan_kswapd_sleep": 1}
    assert sum(stats.malformed.values()) == 1                # the line without nid=
    out = io.StringIO()
    write_ftrace(ev, out, header=False)
    back = np.concatenate(list(read_event_batches(io.BytesIO(out.getvalue().encode()), strict=True)))
    assert back[["kind", "cpu", "pfn", "order", "timestamp"]].tolist() == \
        ev[["kind", "cpu", "pfn", "order", "timestamp"]].tolist()


def test_memory_resized_during_a_capture_is_reported():
    from pcpemu.runs.capture_replay import _resized
    before = {"zones": [{"name": "Normal", "managed": 100}, {"name": "DMA32", "managed": 50}]}
    after = {"zones": [{"name": "Normal", "managed": 164}, {"name": "DMA32", "managed": 50}]}
    assert _resized(before, after) == [
        "resized: zone Normal managed pages went from 100 to 164 during the capture; the replay grows the zone "
        "where the trace shows new memory freed (see the untraced figures); what it does not show (memory taken "
        "away, growth with no free) is untraced"]
    assert _resized(before, before) == []


def test_memory_freed_into_a_zone_during_the_capture_grows_it(tmp_path):
    # Order-10 frees past Normal's managed pages (the before-zoneinfo's start_pfn +
    # managed) are new memory: the replay grows the zone there instead of taking
    # blocks from the untraced owner, and the emulator frees them on the same CPU.
    import lzma
    import shutil

    cap = tmp_path / "cap"
    shutil.copytree(CAP, cap)
    lines = lzma.open(CAP / "trace.txt.xz", "rt").read().splitlines()[:3000]
    ts = float(lines[-1].split()[3].rstrip(":"))
    end = 1048576 + 1703936
    grown = [f"         python3-1       [001] d..1.  {ts + 1e-6 * (i + 1):.6f}: mm_page_free: "
             f"page=00000000deadbeef pfn={end + 1024 * i:#x} order=10" for i in range(8)]
    with lzma.open(cap / "trace.txt.xz", "wt") as f:
        f.write("\n".join(lines + grown) + "\n")
    out = io.StringIO()
    r = replay_capture(cap, emit_trace=out)
    assert r.untraced["grown_pages"] == 8 * 1024
    # Nothing allocates on CPU 1 after them in this trace: not shown otherwise, on demand.
    assert r.untraced["grown_on_demand"] == 8 * 1024
    assert "8,192 of them inside an allocation" in replay_text(r)
    assert r.untraced["frees"]["free_before_trace"] - r.untraced["replayed"] - r.untraced["allocs"] \
        == 8 + r.untraced["pool_exhausted"]
    emitted = [ln for ln in out.getvalue().splitlines() if "mm_page_free:" in ln and "order=10" in ln]
    assert len(emitted) == 8 and all("[001]" in ln for ln in emitted)


_NODE1 = 1 << 23        # node 1's pfns start above all of node 0's


@pytest.fixture(scope="module")
def two_node_capture(tmp_path_factory):
    # The bundled capture as a machine of two like nodes: node 1 a copy of node 0
    # _NODE1 pfns up, each kmem event followed by its copy on node 1.
    import lzma
    import re
    d = tmp_path_factory.mktemp("two-node")
    for f in CAP.iterdir():
        if f.name == "trace.txt.xz":
            continue
        text = f.read_text()
        if f.name.endswith("zoneinfo"):
            node1 = re.sub(r"start_pfn:(\s+)(\d+)", lambda m: f"start_pfn:{m.group(1)}{int(m.group(2)) + _NODE1}",
                           text.replace("Node 0,", "Node 1,"))
            text += node1
        elif f.name.endswith(("pagetypeinfo", "buddyinfo")):
            text = "".join(line + (re.sub(r"^Node(\s+)0,", r"Node\g<1>1,", line) if re.match(r"Node\s+0,", line)
                                   else "") for line in text.splitlines(True))
        (d / f.name).write_text(text)
    shift = lambda m: f"pfn={int(m.group(1), 16) + _NODE1:#x}"    # noqa: E731
    with open(d / "trace.txt.xz", "w") as out:        # plain text: the reader goes by magic bytes
        for line in lzma.open(CAP / "trace.txt.xz", "rt"):
            out.write(line)
            if " mm_page_" in line:
                out.write(re.sub(r"pfn=0x([0-9a-f]+)", shift, line))
    return d


def test_a_node_of_a_several_node_capture_replays_from_its_state_with_its_events(two_node_capture, cap_result):
    with pytest.raises(pcpemu.ConfigError, match="nodes 0, 1"):
        replay_capture(two_node_capture)
    with pytest.raises(pcpemu.ConfigError, match="no node 2"):
        replay_capture(two_node_capture, node=2)
    r0, r1 = (replay_capture(two_node_capture, node=n) for n in (0, 1))
    # Node 0's events are the capture's own: the kernel's figures are the same.
    for r in (r0, r1):
        c, o = r.comparison(), cap_result.comparison()
        for f in FIGURES:
            assert [row[f]["kernel"] for row in c["per_cpu"]] == [row[f]["kernel"] for row in o["per_cpu"]]
            assert c["total"][f]["kernel"] == o["total"][f]["kernel"]
        assert r.skipped_lines["kmem event on another node"] == sum(cap_result.events.values()) - \
            cap_result.events.get("vmstat_update", 0)
        assert r.events == cap_result.events
        assert any(n.startswith(f"node {int(r is r1)}: the events on its pages") for n in r.config_notes)
    # Two like nodes replay alike, each from its own zones' state.
    assert r0.comparison() == r1.comparison()
    assert r0.start == r1.start and r0.start["zones"].keys() == cap_result.start["zones"].keys()


def test_cli_replays_a_node_of_a_several_node_capture(capsys, two_node_capture):
    assert cli.main(["replay", str(two_node_capture), "--node", "1", "--pin-spread", "1", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert any(n.startswith("node 1: the events on its pages, pfns 0x800001-") for n in doc["config_notes"])
    assert doc["pin_spread"]["pages"] == 1
    assert cli.main(["replay", str(two_node_capture)]) == 1
    assert "nodes 0, 1; pcpemu emulates one NUMA node" in capsys.readouterr().err


def test_fidelity_on_a_several_node_capture_replays_its_first_node(two_node_capture):
    d = fidelity_on_capture(two_node_capture, pin_pages=1)
    assert d["node"] == 0 and d["comparison"] == replay_capture(two_node_capture, node=0).comparison()
    assert f"node 0 of nodes 0, 1: `pcpemu replay {two_node_capture} --node N` replays another" in d["notes"]
    assert fidelity_on_capture(CAP, pin_pages=0)["node"] is None


def test_a_cpu_that_came_online_during_the_capture_is_replayed(tmp_path):
    # before-zoneinfo lists only CPU 0's pagesets (CPU 1 was offline), after-zoneinfo both.
    import re
    d = tmp_path / "cap"
    d.mkdir()
    for f in CAP.iterdir():
        (d / f.name).write_bytes(f.read_bytes())
    text = (d / "before-zoneinfo").read_text()
    (d / "before-zoneinfo").write_text(re.sub(r"    cpu: 1\n(?:\s+(?:count|high|batch|high_min|high_max):.*\n)+"
                                              r"  vm stats threshold: \d+\n", "", text))
    assert read_zoneinfo(d / "before-zoneinfo")["nr_cpus"] == 1
    r = replay_capture(d)
    assert r.config["cpus"] == 2 and [c["cpu"] for c in r.comparison()["per_cpu"]] == [0, 1]
    assert any(n.startswith("CPUs came online during the capture (1 in before-zoneinfo, 2 after)")
               for n in r.config_notes)
    assert r.comparison()["per_cpu"][1]["refill_blocks"]["kernel"] > 0


def test_a_capture_replays_alike_on_a_machine_of_more_cpus(tmp_path, cap_result):
    # The bundled capture as if taken on four CPUs with CPUs 1 and 2 idle: CPU 1's
    # pagesets and events become CPU 3's. Each CPU's figures are the capture's own.
    import lzma
    import re
    d = tmp_path / "cap"
    d.mkdir()
    for f in CAP.iterdir():
        (d / f.name).write_bytes(f.read_bytes())

    def four_cpus(block):
        cpu = {c: re.search(rf"    cpu: {c}\n.*?vm stats threshold: \d+\n", block, re.S).group(0) for c in (0, 1)}
        idle = [re.sub(r"count:\s+\d+", "count:    0", cpu[0].replace("cpu: 0", f"cpu: {n}")) for n in (1, 2)]
        return block.replace(cpu[1], "".join(idle) + cpu[1].replace("cpu: 1", "cpu: 3"))
    for f in ("before-zoneinfo", "after-zoneinfo"):
        text = (d / f).read_text()
        (d / f).write_text(re.sub(r"  pagesets\n.*?(?=  node_unreclaimable)", lambda m: four_cpus(m.group(0)),
                                  text, flags=re.S))
    info = json.loads((d / "capture.json").read_text())
    (d / "capture.json").write_text(json.dumps({**info, "cpus": 4}))
    (d / "trace.txt.xz").write_text(lzma.open(CAP / "trace.txt.xz", "rt").read().replace("[001]", "[003]"))
    r = replay_capture(d)
    assert r.config["cpus"] == 4
    got, want = r.comparison()["per_cpu"], cap_result.comparison()["per_cpu"]
    assert [got[c] for c in (0, 3)] == [{**want[c], "cpu": n} for c, n in ((0, 0), (1, 3))]
    assert all(got[c][f]["kernel"] == got[c][f]["emulated"] == 0 for c in (1, 2) for f in FIGURES)


def _seeded_reclaimable_list(types_at):
    # 600 of the owner's order-0 pages on CPU 0's Reclaimable list of a zone of Movable
    # pageblocks but those in types_at: the pageblock type of each page it got.
    m = Machine(_tiny())
    types = np.ones(m.config.zone_layout()[0].managed >> 9, np.uint8)
    for block, mt in types_at.items():
        types[block] = MIGRATETYPE_NAMES.index(mt)
    m.seed_zone("Normal", types, np.zeros(0, np.int64), np.zeros(0, np.int8), kstate.UNTRACED)
    pindex = m.order_to_pindex("Reclaimable", 0)
    assert m.seed_pcp("Normal", 0, 600, 1000, kstate.UNTRACED, pindex=pindex) == 600
    m.check()
    return collections.Counter(m.pageblock_migratetype(p) for p in m.pcp_list("Normal", 0, pindex))


def test_pcp_seeding_takes_the_list_types_pageblocks_then_its_fallbacks():
    # After its own type, a list takes the types a refill of it falls back to, in
    # fallbacks[] order (a Reclaimable refill steals from Unmovable first), not the
    # first of any type: where the traced kernel's pages of that list most likely lay.
    assert _seeded_reclaimable_list({0: "Movable", 3: "Reclaimable", 4: "Unmovable"}) == \
        {"Reclaimable": 512, "Unmovable": 88}
    assert _seeded_reclaimable_list({3: "Unmovable"}) == {"Unmovable": 512, "Movable": 88}


def test_lists_the_trace_shows_are_seeded_before_any_cpus_waiting_pages():
    # One Unmovable pageblock (512 of the owner's pages) among Movable ones. CPU 1's
    # Unmovable list, shown holding 100 pages, gets them from it, though CPU 0's 600
    # waiting pages wait on Unmovable order 0 too (its Movable and Reclaimable lists
    # shown empty) and would have taken every one had they gone on first.
    m = Machine(_tiny())
    types = np.ones(m.config.zone_layout()[0].managed >> 9, np.uint8)
    types[3] = MIGRATETYPE_NAMES.index("Unmovable")
    m.seed_zone("Normal", types, np.zeros(0, np.int64), np.zeros(0, np.int8), kstate.UNTRACED)
    unmovable = m.order_to_pindex("Unmovable", 0)
    zi = {"zones": [{"name": "Normal", "managed": 1,
                     "pagesets": [{"cpu": 0, "count": 600, "high": 1000}, {"cpu": 1, "count": 100, "high": 1000}]}]}
    shown_empty = {m.order_to_pindex("Movable", 0), m.order_to_pindex("Reclaimable", 0)}
    seed = kstate.seed_pcp_lists(m, zi, kstate.Seed({"Normal": {}}, []), {("Normal", 1): {unmovable: 100}},
                                 {("Normal", 0): shown_empty})
    assert [p["lists"] for p in seed.zones["Normal"]["pcp"]] == [{unmovable: 600}, {unmovable: 100}]
    on = {cpu: collections.Counter(m.pageblock_migratetype(p) for p in m.pcp_list("Normal", cpu, unmovable))
          for cpu in (0, 1)}
    assert on == {0: {"Unmovable": 412, "Movable": 188}, 1: {"Unmovable": 100}}
    m.check()
