"""Op streams: the executor, its validation, and agreement with the Python entry points."""

import numpy as np
import pytest

import pcpemu
from pcpemu.runs import workloads as wl
from pcpemu.machine import OP_DTYPE


def small(**kw):
    return pcpemu.Machine(pcpemu.KernelConfig.preset("v6.10", memory="128M", cpus=2, **kw), seed=3)


def test_run_matches_the_python_entry_points():
    ops = wl.mixed(3000, live=64, cpus=(0, 1), seed=5)
    a, b = small(), small()
    res = a.run(ops)
    slots = {}                  # b's own slot table: slot -> pfn, -1 after a failed allocation
    for i, op in enumerate(ops):
        if op["op"] == wl.OP_ALLOC:
            pfn = b.alloc_pages(int(op["gfp"]), int(op["order"]), int(op["cpu"]))
            assert (pfn if pfn is not None else -1) == res.results[i]
            slots[op["slot"]] = -1 if pfn is None else pfn
        elif slots[op["slot"]] >= 0:
            b.free_pages(int(slots[op["slot"]]), int(op["order"]), int(op["cpu"]))
            slots[op["slot"]] = -1
    assert a.buddyinfo() == b.buddyinfo()
    sa, sb = a.stats(), b.stats()
    assert sa["ZONE_LOCK"] == sb["ZONE_LOCK"] and sa["PCP_REFILL_PAGES"] == sb["PCP_REFILL_PAGES"]
    a.check()


def test_same_seed_same_counters():
    ops = wl.mixed(5000, cpus=(0, 1), seed=9)
    r1, r2 = small().run(ops), small().run(ops)
    assert r1.stats == r2.stats and np.array_equal(r1.results, r2.results)
    assert wl.mixed(100, seed=1).tobytes() != wl.mixed(100, seed=2).tobytes()


def test_zone_switching_streams_match_the_python_entry_points():
    # Every op changes gfp and so the zonelist: the executor prepares its
    # alloc_context again each time and must land where alloc_pages does.
    gfps = ["GFP_DMA", "GFP_KERNEL", "GFP_DMA32", "GFP_HIGHUSER_MOVABLE", "GFP_KERNEL | __GFP_RECLAIMABLE"]
    ops = wl.make_ops(2 * 40)
    ops["op"][40:] = wl.OP_FREE
    ops["gfp"][:40] = [pcpemu.parse_gfp(gfps[i % len(gfps)]) for i in range(40)]
    ops["order"] = np.tile([0, 1, 3, 9, 2, 0, 0, 4], 10)
    ops["slot"] = np.tile(np.arange(40), 2)
    cfg = pcpemu.KernelConfig.preset("v6.10", memory="8G", cpus=1)
    a, b = pcpemu.Machine(cfg, seed=1), pcpemu.Machine(cfg, seed=1)
    res = a.run(ops[:40])
    for i in range(40):
        pfn = b.alloc_pages(int(ops["gfp"][i]), int(ops["order"][i]), 0)
        assert pfn == res.results[i] and b.page_info(pfn) == a.page_info(pfn)
    assert {a.page_info(int(pfn))["zone"] for pfn in res.results} == {"DMA", "DMA32", "Normal"}
    a.run(ops[40:])
    for i in range(40):
        b.free_pages(int(res.results[i]), int(ops["order"][i]), 0)
    assert a.buddyinfo() == b.buddyinfo()
    assert a.stats() == b.stats()
    a.check()


def test_page_and_call_counts_add_up_by_order():
    m = small()
    r = m.run(np.concatenate([wl.alloc_free_pairs(3, 9, "GFP_TRANSHUGE_LIGHT | __GFP_COMP", slot=0),
                              wl.alloc_free_pairs(5, 0, "GFP_KERNEL", slot=1)]))
    s = r.stats
    assert s["ALLOC_CALLS"] == 8 and s["FREE_CALLS"] == 8
    assert s["PGALLOC"] == 3 * 512 + 5 and s["PGFREE"] == 3 * 512 + 5
    # A failed allocation is a call that allocates no page.
    fail = wl.alloc_free_pairs(1, 10, "GFP_DMA", slot=2)[:1]
    while m.run(fail).results[0] >= 0:
        fail["slot"] += 1
    s = m.stats()
    assert s["ALLOC_CALLS"] == s["ALLOC_FAILED"] + sum(map(sum, s["alloc"]))


def test_run_stats_are_the_delta():
    m = small()
    m.alloc_pages("GFP_KERNEL", 0)
    r = m.run(wl.alloc_free_pairs(10, 0, "GFP_KERNEL", slot=0))
    assert r.stats["ALLOC_CALLS"] == 10 and m.stats()["ALLOC_CALLS"] == 11


@pytest.mark.parametrize("field, index, value, message", [
    ("cpu", 3, 7, "cpu out of range"),
    ("order", 1, 3, "free order differs"),
    ("op", 2, 9, "unknown op code"),
    ("op", 0, wl.OP_FREE, "no allocation"),
    ("order", 0, 11, "order outside"),
    ("slot", 0, -1, "slot out of range"),
    ("op", 1, wl.OP_ALLOC, "holds a live allocation"),
])
def test_bad_streams_are_refused_before_any_op_runs(field, index, value, message):
    m = small()
    ops = wl.alloc_free_pairs(4, 0, "GFP_KERNEL", slot=0)
    ops[field][index] = value
    before = m.stats()
    with pytest.raises(pcpemu.OpStreamError, match=message):
        m.run(ops)
    assert m.stats() == before
    with pytest.raises(pcpemu.OpStreamError, match="OP_DTYPE"):
        m.run(np.zeros(3, dtype=np.int64))


def test_failed_alloc_makes_its_free_a_counted_skip():
    m = small()
    # The DMA zone (16 MiB) cannot give eight order-10 blocks above its watermarks.
    ops = np.concatenate([wl.alloc_free_pairs(1, 10, "GFP_DMA", slot=s)[:1] for s in range(8)]
                         + [wl.alloc_free_pairs(1, 10, "GFP_DMA", slot=s)[1:] for s in range(8)])
    r = m.run(ops)
    failed = int((r.results[:8] < 0).sum())
    assert failed > 0 and r.stats["FREE_SKIPPED"] == failed
    m.check()


def test_a_failed_allocs_free_in_a_later_run_is_a_counted_skip():
    m = small()
    allocs = np.concatenate([wl.alloc_free_pairs(1, 10, "GFP_DMA", slot=s)[:1] for s in range(8)])
    frees = np.concatenate([wl.alloc_free_pairs(1, 10, "GFP_DMA", slot=s)[1:] for s in range(8)])
    failed = int((m.run(allocs).results < 0).sum())
    assert failed > 0 and all(m.slot_pfn(s) is None for s in range(8 - failed, 8))
    assert m.run(frees).stats["FREE_SKIPPED"] == failed
    with pytest.raises(pcpemu.OpStreamError, match="free of a slot that holds no allocation"):
        m.run(frees[:1])                        # the slot is empty now, failed or not
    assert (m.run(allocs[-1:]).results >= 0).all()   # and takes an allocation again
    m.check()


def test_slots_survive_between_runs():
    m = small()
    ops = wl.order0_churn(0, live=16, slot_base=100)
    m.run(ops)
    assert all(m.slot_pfn(100 + i) is not None for i in range(16))
    frees = np.zeros(16, dtype=OP_DTYPE)
    frees["op"] = wl.OP_FREE
    frees["slot"] = 100 + np.arange(16)
    m.run(frees)
    assert all(m.slot_pfn(100 + i) is None for i in range(16))
    m.drain_all_pages()
    m.check()


def test_a_bulk_alloc_op_fills_its_slot_off_the_pcp_list_untraced():
    # OP_ALLOC_BULK (the replay's alloc_pages_bulk): the page comes off the CPU's pcp
    # list like Machine.alloc_pages_bulk, with no mm_page_alloc; a free empties the slot.
    from pcpemu.kernel.ftrace import MM_PAGE_ALLOC
    from pcpemu.kernel.gfp import parse_gfp
    from pcpemu.machine import OP_ALLOC_BULK
    cfg = pcpemu.KernelConfig.preset("v6.18", memory="1G", cpus=2)
    m, ref = pcpemu.Machine(cfg), pcpemu.Machine(cfg)
    ops = wl.alloc_free_pairs(1, 0, "GFP_KERNEL", cpu=1)      # CPU 1's list refilled
    m.run(ops)
    ref.run(ops)
    bulk = np.zeros(2, OP_DTYPE)
    bulk["op"], bulk["cpu"], bulk["slot"] = [OP_ALLOC_BULK, wl.OP_FREE], 1, 3
    bulk["gfp"][0] = parse_gfp("GFP_KERNEL")
    with m.tracing() as tr:
        m.run(bulk[:1])
    assert m.slot_pfn(3) == ref.alloc_pages_bulk("GFP_KERNEL", cpu=1)
    assert MM_PAGE_ALLOC not in tr.events["kind"].tolist()
    m.run(bulk[1:])
    assert m.slot_pfn(3) is None
    bad = bulk[:1].copy()
    bad["order"] = 1
    with pytest.raises(pcpemu.OpStreamError, match="order"):
        m.run(bad)


def test_an_alloc_starts_its_zonelist_walk_at_the_traced_zone():
    # OP_GFP_ZONE: a replay's hint of the zone the traced kernel took the block from.
    from pcpemu.kernel.gfp import ZONE_NAMES
    from pcpemu.machine import OP_GFP_ZONE_SHIFT
    m = pcpemu.Machine(pcpemu.KernelConfig.preset("v6.10", memory="8G", cpus=2))
    ops = np.concatenate([wl.alloc_free_pairs(1, 0, "GFP_HIGHUSER_MOVABLE", slot=s)[:1] for s in range(3)])
    normal, dma32, dma = (ZONE_NAMES.index(z) + 1 for z in ("Normal", "DMA32", "DMA"))
    ops["gfp"] |= np.array([normal, dma32, dma], np.uint32) << OP_GFP_ZONE_SHIFT
    pfns = m.run(ops).results
    assert [m.page_zone(int(p)) for p in pfns] == ["Normal", "DMA32", "DMA"]
    # A zone the gfp's zonelist does not reach leaves the whole list; a zone past
    # MAX_NR_ZONES is refused, as on any op but an OP_ALLOC.
    dma_only = wl.alloc_free_pairs(1, 0, "GFP_DMA", slot=3)[:1]
    dma_only["gfp"] |= np.uint32(normal) << OP_GFP_ZONE_SHIFT
    assert m.page_zone(int(m.run(dma_only).results[0])) == "DMA"
    before = m.stats()
    for bad in (dma_only.copy(), wl.alloc_free_pairs(1, 0, "GFP_KERNEL", slot=4)[:1]):
        bad["slot"] = 5
        bad["gfp"] |= np.uint32(7) << OP_GFP_ZONE_SHIFT
        with pytest.raises(pcpemu.OpStreamError, match="gfp"):
            m.run(bad)
    bulk = wl.alloc_free_pairs(1, 0, "GFP_KERNEL", slot=6)[:1]
    bulk["op"], bulk["gfp"] = pcpemu.machine.OP_ALLOC_BULK, bulk["gfp"] | np.uint32(dma32) << OP_GFP_ZONE_SHIFT
    with pytest.raises(pcpemu.OpStreamError, match="gfp"):
        m.run(bulk)
    assert m.stats() == before
