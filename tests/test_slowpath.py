"""The slow path's kswapd wake and its end (issue 15, fixes 2 and 3), from the
issue's reproductions: __alloc_pages_slowpath, wake_all_kswapds, balance_pgdat's
boost reset, __alloc_pages_direct_reclaim, should_reclaim_retry and
unreserve_highatomic_pageblock."""

import pytest

import pcpemu

DMA32_MOVABLE = "GFP_DMA32 | __GFP_MOVABLE"


def boosted_dma32(reclaim: str = "progress") -> pcpemu.Machine:
    # DMA32 16384 + Normal 49152 pages, 1 CPU, split lists: fill DMA32 with
    # order-8 movable blocks, then give back four of them and steal below
    # pageblock order, which boosts DMA32 without ZONE_BOOSTED_WATERMARK.
    m = pcpemu.Machine(pcpemu.KernelConfig.preset("v6.10", zones={"DMA32": 16384, "Normal": 49152}, cpus=1,
                                                  reclaim=reclaim))
    for gfp in (DMA32_MOVABLE, DMA32_MOVABLE + " | __GFP_HIGH"):
        while m.alloc_pages(gfp, 8) is not None:
            pass
    for pfn in (0, 1024, 2048, 3072):
        m.free_pages(pfn, 8)
    m.drain_all_pages()
    assert m.alloc_pages(DMA32_MOVABLE, 9) == 15872
    assert m.alloc_pages("GFP_DMA32", 0) == 3072        # steals below pageblock order
    zs = m.zone_state("DMA32")
    assert zs["watermark_boost"] == 512
    assert not zs["flags"] & 1                          # GFP_DMA32 has no __GFP_KSWAPD_RECLAIM
    return m


def test_slow_path_wakes_kswapd_which_drops_the_boost():
    m = boosted_dma32()
    assert m.alloc_pages("GFP_KERNEL", 0) is not None
    assert m.zone_state("DMA32")["watermark_boost"] == 512      # Normal served it: no slow path
    assert m.alloc_pages("GFP_DMA32 | __GFP_KSWAPD_RECLAIM", 1) == 3076
    assert m.zone_state("DMA32")["watermark_boost"] == 0
    m.check()


@pytest.mark.parametrize("reclaim", ["progress", "none"])
def test_kswapd_that_never_reclaims_gives_up(reclaim):
    # DMA32 stays below its high mark: with nothing to reclaim, kswapd runs
    # balance_pgdat again and again and the node turns hopeless
    # (kswapd_failures >= MAX_RECLAIM_RETRIES); later boosts then stay.
    m = boosted_dma32(reclaim)
    m.alloc_pages("GFP_KERNEL", 0)
    assert m.alloc_pages("GFP_DMA32 | __GFP_KSWAPD_RECLAIM", 1) == 3076
    assert m.zone_state("DMA32")["watermark_boost"] == 0
    m.free_pages(4096, 8)                      # a movable piece to steal from below pageblock order
    m.drain_all_pages()
    boosts = m.stats()["WMARK_BOOST"]
    for _ in range(512):                       # use up the unmovable pieces of the last steal
        assert m.alloc_pages("GFP_DMA32", 0) is not None
        if m.stats()["WMARK_BOOST"] > boosts:
            break
    assert m.zone_state("DMA32")["watermark_boost"] == 512
    m.alloc_pages("GFP_DMA32 | __GFP_KSWAPD_RECLAIM", 0)
    assert m.zone_state("DMA32")["watermark_boost"] == (0 if reclaim == "progress" else 512)


def test_a_request_without_kswapd_reclaim_leaves_the_boost():
    m = boosted_dma32()
    m.alloc_pages("GFP_KERNEL", 0)
    assert m.alloc_pages("GFP_DMA32", 1) is None         # no __GFP_KSWAPD_RECLAIM: nobody wakes kswapd
    assert m.zone_state("DMA32")["watermark_boost"] == 512


def test_kswapd_drops_boosts_only_up_to_the_requests_highest_zone():
    m = boosted_dma32()
    # A DMA-only request wakes kswapd for zone DMA (empty here): DMA32 keeps its boost.
    assert m.alloc_pages("GFP_DMA | __GFP_KSWAPD_RECLAIM", 0) is None
    assert m.zone_state("DMA32")["watermark_boost"] == 512


def pcp_held_on_cpu1(reclaim: str) -> tuple[pcpemu.Machine, int]:
    # CPU 1 keeps freed pages on its pcp lists; CPU 0 then exhausts the zone.
    m = pcpemu.Machine(pcpemu.KernelConfig.preset("v6.10", memory="64M", zones="normal", cpus=2, reclaim=reclaim))
    held = [m.alloc_pages("GFP_KERNEL", 0, cpu=1) for _ in range(300)]
    for pfn in held:
        m.free_pages(pfn, 0, cpu=1)
    n = 0
    while m.alloc_pages("GFP_KERNEL", 0, cpu=0) is not None:
        n += 1
    m.check()
    return m, n


def test_reclaim_progress_drains_every_pcp_and_retries():
    m, n = pcp_held_on_cpu1("progress")
    m0, n0 = pcp_held_on_cpu1("none")
    s, s0 = m.stats(), m0.stats()
    assert s["SLOWPATH_DRAIN"] > 0 and s0["SLOWPATH_DRAIN"] == 0
    assert m.pcp_state("Normal", 1)["count"] == 0
    held = m0.pcp_state("Normal", 1)["count"]
    assert held > 300
    # The pages drained from CPU 1 served CPU 0.
    assert n - n0 >= held


def atomic_reserve_then_pressure(reclaim: str) -> tuple[pcpemu.Machine, int]:
    # GFP_KERNEL fills the zone; a GFP_ATOMIC order-1 request, served below the
    # low mark, reserves its pageblock as highatomic; the pages freed back into
    # that block are only usable by reserve requests.
    m = pcpemu.Machine(pcpemu.KernelConfig.preset("v6.10", memory="256M", zones="normal", cpus=1, reclaim=reclaim))
    fill = []
    while (pfn := m.alloc_pages("GFP_KERNEL", 0)) is not None:
        fill.append(pfn)
    atomic = m.alloc_pages("GFP_ATOMIC", 1)
    assert m.pageblock_migratetype(atomic) == "HighAtomic"
    assert m.zone_state("Normal")["nr_reserved_highatomic"] == 512
    for pfn in fill:
        if pfn >> 9 == atomic >> 9:
            m.free_pages(pfn, 0)
    m.drain_all_pages()
    return m, atomic


def test_reclaim_progress_keeps_the_last_highatomic_block():
    m, atomic = atomic_reserve_then_pressure("progress")
    drains = m.stats()["SLOWPATH_DRAIN"]
    assert m.alloc_pages("GFP_KERNEL", 0) is None
    assert m.stats()["SLOWPATH_DRAIN"] == drains + 1
    assert m.zone_state("Normal")["nr_reserved_highatomic"] == 512
    assert m.pageblock_migratetype(atomic) == "HighAtomic"
    m.check()


def test_reclaim_none_force_unreserves_before_giving_up():
    m, atomic = atomic_reserve_then_pressure("none")
    assert m.alloc_pages("GFP_KERNEL", 0) is not None
    assert m.zone_state("Normal")["nr_reserved_highatomic"] == 0
    assert m.pageblock_migratetype(atomic) == "Unmovable"       # ac->migratetype of GFP_KERNEL
    assert m.stats()["SLOWPATH_DRAIN"] == 0
    m.check()


@pytest.mark.parametrize("gfp", ["GFP_KERNEL | __GFP_NORETRY", "GFP_ATOMIC"])
def test_no_force_unreserve_for_requests_that_stop_early(gfp):
    # __GFP_NORETRY stops after direct reclaim, GFP_ATOMIC cannot reclaim.
    m, atomic = atomic_reserve_then_pressure("none")
    before = m.zone_state("Normal")["nr_reserved_highatomic"]
    m.alloc_pages(gfp, 0)
    assert m.zone_state("Normal")["nr_reserved_highatomic"] == before


def test_reclaim_traced_adds_nothing_of_its_own():
    # A capture replay's reclaim: the kernel's drains and frees come from its trace, so
    # a failed request neither drains the pcp lists nor gives back highatomic blocks.
    m, n = pcp_held_on_cpu1("traced")
    assert m.stats()["SLOWPATH_DRAIN"] == 0 and m.pcp_state("Normal", 1)["count"] > 300
    m, atomic = atomic_reserve_then_pressure("traced")
    assert m.alloc_pages("GFP_KERNEL", 0) is None
    assert m.zone_state("Normal")["nr_reserved_highatomic"] == 512 and m.stats()["SLOWPATH_DRAIN"] == 0
    m.check()


def test_reclaim_is_checked():
    with pytest.raises(pcpemu.ConfigError, match="reclaim: 'some' is not one of progress, none, traced"):
        pcpemu.KernelConfig(reclaim="some")
