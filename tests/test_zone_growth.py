"""Memory that reaches a zone while a trace runs (issue 16): __free_pages_core frees
it in MAX_PAGE_ORDER blocks past the zone's managed pages, and the kernel recomputes
the watermarks and pcp limits (init_per_zone_wmark_min -> setup_per_zone_wmarks ->
zone_pcp_update). The replay reads the growth off the trace (kstate.ZoneGrowth) and
grows the emulated zone (Machine.grow_zone)."""

import os

import numpy as np
import pytest

from pcpemu.errors import PcpemuError
from pcpemu.kernel.config import KernelConfig
from pcpemu.kernel.procfs import read_pagetypeinfo, read_zoneinfo
from pcpemu.kernel.gfp import ZONE_BELOW_HIGH, parse_gfp
from pcpemu.machine import OP_DTYPE, Machine
from pcpemu.runs.kstate import FirstDrains, PcpLists, ZoneGrowth
from pcpemu.runs.replay import _first_drain_sync, _growth_points
from pcpemu.runs.workloads import OP_ALLOC, OP_FREE

PROC = os.path.join(os.path.dirname(__file__), "data", "proc-6.18-fc")
ZONEINFO = os.path.join(PROC, "zoneinfo")


@pytest.fixture(scope="module")
def dump():
    return read_zoneinfo(ZONEINFO)


@pytest.fixture(scope="module")
def pt():
    return read_pagetypeinfo(os.path.join(PROC, "pagetypeinfo"))


def test_growth_params_follow_managed_pages(dump, pt):
    cfg = KernelConfig.from_zoneinfo(dump, "v6.18")
    g = ZoneGrowth(dump, pt, cfg, ["DMA", "DMA32", "Normal"])
    normal = cfg.zones["Normal"]["managed"]
    p = g.grow("Normal", 131072)
    assert p.managed == normal + 131072
    # zone_highsize: high_max is managed / MIN_PERCPU_PAGELIST_HIGH_FRACTION (8) / CPUs
    assert p.high_max == (normal + 131072) // 8 // cfg.cpus
    assert g.grow("Normal", 1024).managed == normal + 132096      # growth adds up


def test_find_only_max_order_frees_past_the_online_end(dump, pt):
    cfg = KernelConfig.from_zoneinfo(dump, "v6.18")
    g = ZoneGrowth(dump, pt, cfg, ["DMA", "DMA32", "Normal"])
    z = next(z for z in dump["zones"] if z["name"] == "Normal")
    end = z["start_pfn"] + z["managed"]
    pfn = np.array([end, end, end - 1024, z["start_pfn"] + z["spanned"]], np.int64)
    order = np.array([10, 9, 10, 10], np.int8)
    assert g.find(pfn, order).tolist() == [g.names.index("Normal"), -1, -1, -1]


def test_reserved_pages_past_the_managed_count_are_online_memory(dump, pt):
    # DMA32 manages fewer pages than its pageblocks hold (reserved pages): an order-10
    # free just past start_pfn + managed is a block allocated before the trace, not
    # memory coming in; past the last pageblock it would be.
    cfg = KernelConfig.from_zoneinfo(dump, "v6.18")
    g = ZoneGrowth(dump, pt, cfg, ["DMA", "DMA32", "Normal"])
    z = next(z for z in dump["zones"] if z["name"] == "DMA32")
    online = z["start_pfn"] + (sum(pt["zones"]["DMA32"]["blocks"].values()) << 9)
    assert z["start_pfn"] + z["managed"] < online < z["start_pfn"] + z["spanned"]
    pfn = np.array([z["start_pfn"] + z["managed"] + 1, online], np.int64)
    ten = np.array([10, 10], np.int8)
    assert g.find(pfn, ten).tolist() == [-1, g.names.index("DMA32")]


def test_grow_zone_frees_new_blocks_and_sets_limits(dump, pt):
    cfg = KernelConfig.from_zoneinfo(dump, "v6.18")
    m = Machine(cfg)
    g = ZoneGrowth(dump, pt, cfg, [z.name for z in m.populated_zones])
    before = m.zone_state("Normal")["nr_free_pages"]
    p = g.grow("Normal", 4096)
    with m.tracing() as tr:
        m.grow_zone("Normal", 4096, p, cpu=1)
    st = m.zone_state("Normal")
    assert st["nr_free_pages"] == before + 4096
    assert tuple(st["watermark"]) == tuple(p.watermark)
    pcp = m.pcp_state("Normal", 0)
    assert (pcp["high_min"], pcp["high_max"]) == (p.high_min, p.high_max)
    # One mm_page_free of order 10 per block, on the CPU that freed it.
    assert len(tr.events) == 4 and set(tr.events["order"].tolist()) == {10} and set(tr.events["cpu"].tolist()) == {1}
    m.check()
    # The new pages are the zone's: taken and given back like any other.
    pfn = m.free_list("Normal", 10, "Movable")[-1]
    assert m.page_zone(pfn) == "Normal"
    with pytest.raises(PcpemuError):
        m.grow_zone("Normal", 1000, p)       # not whole MAX_PAGE_ORDER blocks
    assert not st["flags"] & ZONE_BELOW_HIGH


def test_a_zone_grown_on_demand_is_below_high(dump, pt):
    # Deferred struct-page init grows a zone from get_page_from_freelist, after the zone
    # failed its check against the high watermark, which set ZONE_BELOW_HIGH: the next
    # refill leaves pcp->high where it was (nr_pcp_alloc), where it otherwise grows by
    # the refill's batch.
    cfg = KernelConfig.from_zoneinfo(dump, "v6.18")
    highs = {}
    for on_demand in (False, True):
        m = Machine(cfg)
        p = ZoneGrowth(dump, pt, cfg, [z.name for z in m.populated_zones]).grow("Normal", 1024)
        m.grow_zone("Normal", 1024, p, cpu=1, on_demand=on_demand)
        assert bool(m.zone_state("Normal")["flags"] & ZONE_BELOW_HIGH) == on_demand
        assert m.stats(per_cpu=True)["per_cpu"][1]["ZONE_BELOW_HIGH_SET"] == on_demand
        ops = _ops([(OP_ALLOC, 0, 0)])
        ops["gfp"] = parse_gfp("GFP_HIGHUSER_MOVABLE")
        m.run(ops)
        pcp = m.pcp_state("Normal", 0)
        highs[on_demand] = pcp["high"] - pcp["high_min"]      # a fresh pcp's high is clamped up to high_min first
    assert highs == {False: pcp["batch"], True: 0}


def _ops(rows):
    ops = np.zeros(len(rows), OP_DTYPE)
    for i, (op, cpu, order) in enumerate(rows):
        ops[i]["op"], ops[i]["cpu"], ops[i]["order"] = op, cpu, order
    return ops


def test_growth_follows_the_next_allocation_on_its_cpu():
    # Frees 1-2 grew the zone on CPU 1; CPU 0's allocation (3) does not end it, CPU 1's
    # (4) does: grown on demand. Free 5 grew it on CPU 0 with nothing after it in the
    # batch: on demand too, as far as the batch tells. Free 6 grew it on CPU 1, whose
    # next op is a free (7): memory onlined by other work, not on demand.
    ops = _ops([(OP_ALLOC, 1, 0), (OP_FREE, 1, 10), (OP_FREE, 1, 10), (OP_ALLOC, 0, 0), (OP_ALLOC, 1, 9),
                (OP_FREE, 0, 10), (OP_FREE, 1, 10), (OP_FREE, 1, 9), (OP_ALLOC, 1, 0)])
    sel = np.arange(10, 19)
    keep = np.array([True, False, False, True, True, False, False, True, True])
    got = _growth_points(ops, sel, keep, np.array([1, 2, 5, 6]), ["Normal"] * 4)
    assert got == [(14, "Normal", 2048, 1, True), (18, "Normal", 1024, 1, False), (-1, "Normal", 1024, 0, True)]


def test_a_first_drain_pins_nothing_in_a_zone_below_high(dump, pt):
    # Under ZONE_BELOW_HIGH a free drains at any count from high_min up (nr_pcp_high):
    # the kernel's first drain then says nothing of where count stood against high.
    cfg = KernelConfig.from_zoneinfo(dump, "v6.18")
    rows = {}
    for on_demand in (False, True):
        m = Machine(cfg)
        m.grow_zone("Normal", 1024, ZoneGrowth(dump, pt, cfg, [z.name for z in m.populated_zones]).grow("Normal", 1024),
                    cpu=1, on_demand=on_demand)
        first = FirstDrains(dump, cfg.cpus, np.ones(11, bool), 5)
        _first_drain_sync(first, PcpLists(m, dump), {"x": m}, "Normal", 0, "free", 10, 0, 1.0)(m)
        rows[on_demand] = first.found[0]
    assert rows[False]["zone_flagged"] == [] and "x" in rows[False]["pages"]
    assert rows[True]["zone_flagged"] == ["x"] and rows[True]["pages"] == {} and rows[True]["moved"] == {}
