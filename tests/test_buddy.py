"""The buddy rules by hand-worked cases, on a one-zone 64 MiB machine (16 order-10 blocks)."""

import pytest

import pcpemu

MOVABLE4 = "GFP_HIGHUSER_MOVABLE"     # order 4 bypasses the pcp lists
UNMOVABLE = "GFP_KERNEL"


def machine(**kw):
    kw.setdefault("memory", "64M")
    kw.setdefault("zones", "normal")
    kw.setdefault("cpus", 1)
    return pcpemu.Machine(pcpemu.KernelConfig.preset("v6.10", **kw), seed=0)


def nr_free(m, zone="Normal"):
    return m.zone_state(zone)["nr_free"]


def test_boot_frees_everything_in_max_order_blocks():
    m = machine()
    assert nr_free(m) == [0] * 10 + [16]
    assert m.free_list("Normal", 10, "Movable")[:3] == [0, 1024, 2048]   # rising pfn, freed to the tail
    assert m.zone_state("Normal")["nr_free_pages"] == 16384
    m.check()


def test_expand_splits_into_upper_halves_on_the_same_type():
    m = machine()
    pfn = m.alloc_pages(MOVABLE4, order=4)
    assert pfn == 0
    assert nr_free(m) == [0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 15]
    # The upper half of each split stays free: 16, 32, 64, 128, 256, 512.
    assert [m.free_list("Normal", o, "Movable") for o in range(4, 10)] == [[16], [32], [64], [128], [256], [512]]
    m.check()


def test_free_merges_back_to_max_order():
    m = machine()
    pfn = m.alloc_pages(MOVABLE4, order=4)
    m.free_pages(pfn, order=4)
    assert nr_free(m) == [0] * 10 + [16]
    m.check()


def test_unmovable_claims_a_whole_block_when_falling_back():
    m = machine()
    pfn = m.alloc_pages(UNMOVABLE, order=4)
    s = m.stats()
    assert pfn == 0
    assert s["PGALLOC_FALLBACK"] == 1 and s["PGSTEAL_BLOCK"] == 1
    # An order-10 block spans two pageblocks; both change type.
    assert s["PAGEBLOCK_CHANGE"] == 2
    assert m.pageblock_migratetype(0) == m.pageblock_migratetype(512) == "Unmovable"
    assert m.free_list("Normal", 9, "Unmovable") == [512]
    m.free_pages(pfn, 4)
    assert m.free_list("Normal", 10, "Unmovable") == [0]
    m.check()


def test_fallback_order_prefers_reclaimable_for_unmovable():
    m = machine()
    r = m.alloc_pages("GFP_KERNEL | __GFP_RECLAIMABLE", order=10)
    m.free_pages(r, 10)           # a free Reclaimable block now exists
    assert m.pageblock_migratetype(r) == "Reclaimable"
    u = m.alloc_pages(UNMOVABLE, order=4)
    assert r <= u < r + 1024
    m.check()


def test_cma_first_only_when_cma_is_more_than_half_of_free_memory():
    half = machine(cma="32M")        # CMA == half: not more than half
    p = half.alloc_pages(MOVABLE4, order=4)
    assert half.pageblock_migratetype(p) == "Movable"
    most = machine(cma="34M")
    p = most.alloc_pages(MOVABLE4, order=4)
    assert most.pageblock_migratetype(p) == "CMA"
    assert most.stats()["cma_pages_to"]["Movable"] == 16
    most.check()


def test_unmovable_requests_never_get_cma_from_the_buddy():
    m = machine(cma="48M")
    got = [m.alloc_pages(UNMOVABLE, order=4) for _ in range(200)]
    assert all(m.pageblock_migratetype(p) != "CMA" for p in got if p is not None)
    assert m.stats()["CMA_TO_NONMOVABLE"] == 0
    m.check()


def test_watermark_does_not_count_cma_for_unmovable_requests():
    # 64 MiB with 56 MiB of CMA: the 8 MiB outside CMA is all an unmovable
    # request may use, and it must stop at the min watermark plus its order.
    m = machine(cma="56M")
    zone = m.zones[2]
    pfns = []
    while (p := m.alloc_pages(UNMOVABLE, order=4)) is not None:
        pfns.append(p)
    st = m.zone_state("Normal")
    non_cma_free = st["nr_free_pages"] - st["nr_free_cma"]
    # __zone_watermark_ok: fails once free - (2**4 - 1) <= min (slow path flags).
    assert non_cma_free - 15 <= zone.watermark[0]
    assert non_cma_free + 16 - 15 > zone.watermark[0]
    assert m.alloc_pages(MOVABLE4, order=4) is not None       # CMA still serves movable requests
    assert m.stats()["alloc_fail"][4][0] == 1
    m.check()


def test_cma_and_movable_buddies_do_not_merge():
    m = machine(cma="2M")              # one CMA pageblock at the top: pfn 15872..16383
    top = 16384 - 512
    assert m.pageblock_migratetype(top) == "CMA"
    assert m.free_list("Normal", 9, "CMA") == [top]
    assert m.free_list("Normal", 9, "Movable") == [top - 512]
    m.check()


def test_cma_pageblocks_boot_through_cpu0s_pcp_to_the_list_heads():
    # Issue 15's reproduction: cma_activate_area frees each CMA pageblock in
    # rising pfn order through free_unref_page with the core_initcall pcp values
    # (batch 7 from 24576 non-CMA pages, high_min 28, low watermark still 0):
    # every block but the last is drained to the head of the CMA lists.
    m = pcpemu.Machine(pcpemu.KernelConfig(zones={"Normal": 65536}, cpus=1, cma=40960))
    top = 65536 - 512
    thp_movable = m.order_to_pindex("Movable", 9)
    assert m.pcp_list("Normal", 0, thp_movable) == [top]
    pcp = m.pcp_state("Normal", 0)
    assert (pcp["count"], pcp["high"], pcp["free_count"]) == (512, 512 + 7, 512)
    assert pcp["batch"] == m.zones[2].batch                 # zone_pcp_update after the watermarks
    assert m.free_list("Normal", 9, "CMA") == [top - 512]   # its buddy is on the pcp list
    assert m.free_list("Normal", 10, "CMA")[:2] == [63488, 62464]     # highest first
    assert m.alloc_pages(MOVABLE4, order=4) == top - 512    # CMA first: the highest CMA pfn
    m.check()


def test_cma_boot_without_thp_frees_straight_to_the_list_heads():
    m = pcpemu.Machine(pcpemu.KernelConfig.preset("nothp", zones={"Normal": 65536}, cpus=1, cma=40960))
    assert m.pcp_state("Normal", 0)["count"] == 0
    assert m.free_list("Normal", 10, "CMA")[0] == 65536 - 1024
    assert m.alloc_pages(MOVABLE4, order=4) == 65536 - 1024
    m.check()


def test_boot_counts_nothing():
    m = pcpemu.Machine(pcpemu.KernelConfig(zones={"Normal": 65536}, cpus=2, cma=40960))
    s = m.stats()
    assert s["PCP_DRAIN"] == 0 and s["ZONE_LOCK"] == 0 and s["PAGEBLOCK_CHANGE"] == 0


def test_free_errors_leave_the_machine_unchanged():
    m = machine()
    pfn = m.alloc_pages(MOVABLE4, order=4)
    before = (m.buddyinfo(), m.stats())
    with pytest.raises(pcpemu.WrongOrderError, match="another order"):
        m.free_pages(pfn, order=3)
    with pytest.raises(pcpemu.NotAllocatedError, match="inside the block allocated at 0x0"):
        m.free_pages(pfn + 1, order=0)
    with pytest.raises(pcpemu.DoubleFreeError, match="already free"):
        m.free_pages(16, order=4)
    with pytest.raises(pcpemu.DoubleFreeError):
        m.free_pages(17, order=0)
    with pytest.raises(pcpemu.BadPfnError):
        m.free_pages(1 << 30, order=0)
    with pytest.raises(pcpemu.BadOrderError):
        m.free_pages(pfn, order=11)
    with pytest.raises(pcpemu.UnknownGfpError):
        m.alloc_pages("GFP_KERNAL", 0)
    # The int fast paths of the checks must not let bools or other types through.
    with pytest.raises(pcpemu.BadOrderError):
        m.alloc_pages(MOVABLE4, order=True)
    with pytest.raises(pcpemu.PcpemuError, match="cpu"):
        m.alloc_pages(MOVABLE4, order=0, cpu=True)
    with pytest.raises(pcpemu.PcpemuError, match="owner"):
        m.alloc_pages(MOVABLE4, order=0, owner=True)
    with pytest.raises(pcpemu.BadPfnError):
        m.free_pages(float(pfn), order=4)
    assert (m.buddyinfo(), m.stats()) == before
    m.free_pages(pfn, 4)
    with pytest.raises(pcpemu.DoubleFreeError):
        m.free_pages(pfn, 4)
    m.check()


def test_zonelist_falls_back_to_dma32_when_normal_is_cma():
    m = pcpemu.Machine(pcpemu.KernelConfig.preset("v6.10", memory="8G", cma="4G", cpus=1))
    p = m.alloc_pages(UNMOVABLE, order=0)
    assert m.page_info(p)["zone"] == "DMA32"
    assert m.stats()["ZONE_FALLBACK"] == 1
    m.check()


def test_atomic_high_order_slow_path_reserves_a_highatomic_block():
    m = machine(memory="256M")                   # 1% of the zone is 655 pages: room for one reserve
    while m.alloc_pages(MOVABLE4, order=4) is not None:
        pass
    assert m.zone_state("Normal")["nr_reserved_highatomic"] == 0
    p = m.alloc_pages("GFP_ATOMIC", order=1)
    assert p is not None and m.stats()["SLOWPATH"] >= 1
    assert m.pageblock_migratetype(p) == "HighAtomic"
    assert m.zone_state("Normal")["nr_reserved_highatomic"] == 512
    # A second atomic request does not reserve more than ALIGN(1% of the zone, 512) = 1024.
    m.alloc_pages("GFP_ATOMIC", order=2)
    assert m.zone_state("Normal")["nr_reserved_highatomic"] <= 1024
    m.free_pages(p, 1)
    m.drain_all_pages()
    m.check()
