"""The pcp rules by hand-worked cases (refill, drain, high tuning, list choice, trylock)."""

import pytest

import pcpemu
from pcpemu.kernel.gfp import memalloc_pin, parse_gfp
from pcpemu.kernel.pcplists import pcp_list_table

KERNEL = "GFP_KERNEL"
THP = "GFP_TRANSHUGE_LIGHT | __GFP_COMP"
PINNED_THP_TARGET = memalloc_pin(parse_gfp("GFP_TRANSHUGE")) | parse_gfp("__GFP_COMP")


def machine(preset="v6.10", **kw):
    kw.setdefault("memory", "256M")
    kw.setdefault("zones", "normal")
    kw.setdefault("cpus", 2)
    return pcpemu.Machine(pcpemu.KernelConfig.preset(preset, **kw), seed=0)


@pytest.mark.parametrize("preset, nr_lists, thp", [
    ("v5.14", 15, [12, 13, 14]),
    ("v6.9", 13, [12, 12, 12]),
    ("v6.10", 14, [12, 13, 12]),
    ("nothp", 12, [-1, -1, -1]),
])
def test_order_to_pindex_tables(preset, nr_lists, thp):
    pindex, orders = pcp_list_table(pcpemu.KernelConfig.preset(preset))
    assert len(orders) == nr_lists
    assert pindex[9][:3] == thp
    assert [pindex[o][mt] for o in range(4) for mt in range(3)] == list(range(12))
    assert all(pindex[o][0] == -1 for o in range(4, 9)) and pindex[10][0] == -1
    assert orders[:12] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]


def test_android_files_cma_thp_on_the_non_movable_list():
    pindex, orders = pcp_list_table(pcpemu.KernelConfig.preset("android"))
    assert len(orders) == 18
    assert pindex[9][4] == pindex[9][0] == 16 and pindex[9][1] == 17
    assert pindex[0][4] == 3          # CMA has low-order lists of its own


def test_first_refill_takes_batch_pages_and_grows_alloc_factor():
    m = machine()
    pcp0 = m.pcp_state("Normal", 0)
    batch, high_min, high_max = pcp0["batch"], pcp0["high_min"], pcp0["high_max"]
    m.alloc_pages(KERNEL, 0, cpu=0)
    pcp = m.pcp_state("Normal", 0)
    # nr_pcp_alloc: high = high_min, grows by batch; refill = batch; alloc_factor 1.
    assert pcp["count"] == batch - 1
    assert pcp["high"] == min(high_min + batch, high_max)
    assert pcp["alloc_factor"] == 1
    s = m.stats()
    assert s["PCP_REFILL"] == 1 and s["PCP_REFILL_PAGES"] == batch and s["pcp_miss"][0] == 1
    for _ in range(batch - 1):
        m.alloc_pages(KERNEL, 0, cpu=0)
    assert m.stats()["pcp_hit"][0] == batch - 1
    m.alloc_pages(KERNEL, 0, cpu=0)          # second refill: batch << 1
    assert m.stats()["PCP_REFILL_PAGES"] == batch + 2 * batch
    m.check()


def test_thp_refill_takes_two_blocks_and_leaves_one():
    m = machine()
    p = m.alloc_pages(THP, 9, cpu=0)
    assert m.pcp_state("Normal", 0)["count"] == 512
    assert m.pcp_list("Normal", 0, 13) == [p + 512]
    assert m.stats()["PCP_REFILL_PAGES"] == 1024
    m.check()


def test_pcp_lists_are_lifo():
    m = machine()
    a, b = m.alloc_pages(KERNEL, 0), m.alloc_pages(KERNEL, 0)
    m.free_pages(a, 0)
    m.free_pages(b, 0)
    assert m.pcp_list("Normal", 0, 0)[:2] == [b, a]
    assert m.alloc_pages(KERNEL, 0) == b


def test_free_drains_when_count_reaches_high():
    m = machine(percpu_pagelist_high_fraction=64)   # high_min == high_max: no auto-tuning
    pcp = m.pcp_state("Normal", 0)
    high, batch = pcp["high_max"], pcp["batch"]
    pfns = [m.alloc_pages(KERNEL, 0, cpu=1) for _ in range(high + batch)]
    assert m.pcp_state("Normal", 0)["count"] == 0
    drains = m.stats()["PCP_DRAIN"]
    for i, p in enumerate(pfns[:high]):
        m.free_pages(p, 0, cpu=0)
        count = m.pcp_state("Normal", 0)["count"]
        if i + 1 < high:
            assert count == i + 1
    s = m.stats()
    # At count == high: nr_pcp_free = clamp(free_count, batch, high - batch),
    # free_count having stopped growing at batch << PCP_BATCH_SCALE_MAX.
    free_count = min(high, batch << 5)
    freed = min(max(free_count, batch), high - batch)
    assert s["PCP_DRAIN"] == drains + 1
    assert m.pcp_state("Normal", 0)["count"] == high - freed
    m.check()


def test_auto_tuning_raises_high_on_consecutive_frees():
    m = machine(cpus=16)            # high_min 252 < free_count + batch
    pcp = m.pcp_state("Normal", 0)
    pfns = [m.alloc_pages(KERNEL, 0, cpu=1) for _ in range(pcp["high_min"] + 200)]
    for p in pfns:
        m.free_pages(p, 0, cpu=0)
    after = m.pcp_state("Normal", 0)
    # nr_pcp_high: when count reaches high, high grows to free_count + batch.
    assert after["high"] > pcp["high_min"]
    assert m.stats()["PCP_HIGH_CHANGE"] > 0
    before = after["high"]
    m.decay_pcp_high(0)
    assert m.pcp_state("Normal", 0)["high"] == max(after["count"] - (after["batch"] << 5),
                                                   before - before // 8, after["high_min"])
    m.check()


def test_cma_thp_is_freed_to_the_movable_list():
    m = machine(cma="160M")
    p = m.alloc_pages(THP, 9, cpu=0)
    assert m.pageblock_migratetype(p) == "CMA"
    m.drain_pages(0)
    m.free_pages(p, 9, cpu=0)
    assert m.pcp_list("Normal", 0, 13) == [p]       # the movable THP list
    m.check()


@pytest.mark.parametrize("preset, polluted", [("v6.9", True), ("v6.10", False), ("android", False)])
def test_non_movable_thp_and_cma_on_the_pcp(preset, polluted):
    # KERNEL-SPEC 7.6: a movable THP fault refills 2 CMA blocks and leaves one
    # on the list; the pinned migration target (unmovable, order 9) follows.
    m = machine(preset, cma="160M")
    m.drain_pages(0)                # the CMA block boot left on CPU 0's THP list
    src = m.alloc_pages(THP, 9, cpu=0)
    assert m.pageblock_migratetype(src) == "CMA"
    target = m.alloc_pages(PINNED_THP_TARGET, 9, cpu=0)
    assert (m.pageblock_migratetype(target) == "CMA") == polluted
    assert m.stats()["CMA_TO_NONMOVABLE"] == int(polluted)
    m.check()


def test_android_cma_thp_freed_lands_where_unmovable_requests_look():
    m = machine("android", cma="160M")
    src = m.alloc_pages(THP, 9, cpu=0)
    m.drain_pages(0)
    m.free_pages(src, 9, cpu=0)                     # CMA is a pcp type: non-movable THP list
    assert m.pcp_list("Normal", 0, 16) == [src]
    target = m.alloc_pages(PINNED_THP_TARGET, 9, cpu=0)
    assert target == src and m.stats()["CMA_TO_NONMOVABLE"] == 1


def test_trylock_failure_falls_back_to_the_buddy():
    m = machine()
    p = m.alloc_pages(KERNEL, 0, cpu=0)
    m.set_pcp_locked("Normal", 0, True)            # a remote drain holds CPU 0's pcp
    q = m.alloc_pages(KERNEL, 0, cpu=0)
    m.free_pages(p, 0, cpu=0)
    s = m.stats()
    assert q is not None
    assert s["PCP_TRYLOCK_FAIL"] == 2
    assert s["zone_lock"]["rmqueue_buddy"] == 1 and s["zone_lock"]["free_one_page"] == 1
    m.set_pcp_locked("Normal", 0, False)
    m.check()


def test_pcp_cachelines_come_from_real_addresses():
    m = machine()
    for _ in range(3):
        m.free_pages(m.alloc_pages("GFP_HIGHUSER_MOVABLE", 0), 0)
    s = m.stats()["pcp_cachelines"]
    # lock, free_count, count and lists[1] all lie on the first cacheline.
    assert s["alloc"]["histogram"][1] >= 2
    m2 = machine()
    m2.alloc_pages(THP, 9)
    m2.alloc_pages(THP, 9)          # a hit: list 13 is on line 3, the counters on line 0
    cl = m2.stats()["pcp_cachelines"]["alloc"]
    assert cl["histogram"][2] == 2 and sum(cl["histogram"]) == 2
    # total and mean are read off the histogram: one bucket per line count.
    assert len(cl["histogram"]) == 65 and cl["total"] == 4 and cl["mean"] == 2.0


def test_drain_all_pages_empties_every_cpu():
    m = machine()
    for cpu in (0, 1):
        m.free_pages(m.alloc_pages(KERNEL, 0, cpu=cpu), 0, cpu=cpu)
    m.drain_all_pages()
    assert all(m.pcp_state("Normal", c)["count"] == 0 for c in (0, 1))
    assert m.zone_state("Normal")["nr_free_pages"] == 65536
    m.check()


def test_mthp_orders_get_lists_of_their_own():
    cfg = pcpemu.KernelConfig.preset("v6.10", memory="256M", zones="normal", cpus=1,
                                     mthp_orders={4: "split", 6: "single"})
    pindex, orders = pcp_list_table(cfg)
    # 12 low-order lists, order 4 split (12, 13), order 6 single (14), THP split (15, 16).
    assert orders == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 6, 9, 9]
    assert pindex[4][:3] == [12, 13, 12] and pindex[6][:3] == [14, 14, 14] and pindex[9][:3] == [15, 16, 15]
    m = pcpemu.Machine(cfg)
    p = m.alloc_pages("GFP_HIGHUSER_MOVABLE", 4)
    assert m.stats()["PCP_REFILL"] == 1          # order 4 now goes through the pcp
    m.free_pages(p, 4)
    assert p in m.pcp_list("Normal", 0, 13)
    assert m.pcp_alloc_size == 320         # 32 + 17 * 16 = 304, rounded to a cacheline
    m.check()


def test_decayed_high_is_the_high_decay_pcp_high_leaves():
    # pcp_state's decayed_high: an eighth off high, floored at high_min, when the count
    # does not hold high up; a high at high_min stays where it is.
    m = machine()
    for _ in range(5):
        m.alloc_pages(KERNEL, 0, cpu=0)             # a refill raises high above high_min
    pcp = m.pcp_state("Normal", 0)
    assert pcp["high"] > pcp["high_min"] and pcp["count"] < pcp["batch"]
    assert pcp["decayed_high"] == max(pcp["high"] - (pcp["high"] >> 3), pcp["high_min"])
    while m.pcp_state("Normal", 0)["high"] > m.pcp_state("Normal", 0)["high_min"]:
        expect = m.pcp_state("Normal", 0)["decayed_high"]
        m.decay_pcp_high(0)
        assert m.pcp_state("Normal", 0)["high"] == expect
    pcp = m.pcp_state("Normal", 0)
    assert pcp["decayed_high"] == pcp["high"] == pcp["high_min"]
    m.check()
