import pytest

from pcpemu import UnknownGfpError
from pcpemu.kernel.gfp import GFP_FLAGS, gfp_migratetype, gfp_zone, memalloc_pin, parse_gfp, show_gfp_flags


def test_composite_masks_match_the_kernel():
    assert GFP_FLAGS["GFP_KERNEL"] == 0xCC0
    assert GFP_FLAGS["GFP_USER"] == 0x100CC0
    assert GFP_FLAGS["GFP_HIGHUSER_MOVABLE"] == 0x100CCA
    assert GFP_FLAGS["GFP_TRANSHUGE_LIGHT"] == 0x1C20CA
    assert GFP_FLAGS["GFP_TRANSHUGE"] == 0x1C24CA
    assert GFP_FLAGS["GFP_ATOMIC"] == 0x820


def test_parse_forms():
    assert parse_gfp("GFP_KERNEL | __GFP_COMP") == 0xCC0 | 0x40000
    assert parse_gfp("0x1c24ca") == 0x1C24CA
    assert parse_gfp("none") == 0
    assert parse_gfp(0xCC0) == 0xCC0


@pytest.mark.parametrize("bad", ["GFP_KERNAL", "GFP_KERNEL ||", "", "__GFP_COMP|0x1000000", -1])
def test_parse_rejects(bad):
    with pytest.raises(UnknownGfpError):
        parse_gfp(bad)


def test_show_gfp_flags_like_ftrace():
    assert show_gfp_flags(0x1C24CA) == "GFP_TRANSHUGE"
    assert show_gfp_flags(0xCC0) == "GFP_KERNEL"
    assert show_gfp_flags(0) == "none"
    # KERNEL-SPEC 7.2: the pinned migration target of a THP.
    assert show_gfp_flags(memalloc_pin(0x1C24CA)) == (
        "__GFP_HIGHMEM|__GFP_IO|__GFP_FS|__GFP_NOWARN|__GFP_COMP|__GFP_NOMEMALLOC|__GFP_HARDWALL|"
        "__GFP_DIRECT_RECLAIM")


def test_migratetype_and_zone():
    assert gfp_migratetype(parse_gfp("GFP_KERNEL")) == 0
    assert gfp_migratetype(parse_gfp("GFP_HIGHUSER_MOVABLE")) == 1
    assert gfp_migratetype(parse_gfp("GFP_KERNEL|__GFP_RECLAIMABLE")) == 2
    assert gfp_migratetype(memalloc_pin(parse_gfp("GFP_TRANSHUGE"))) == 0
    assert gfp_zone(parse_gfp("GFP_KERNEL")) == 2
    assert gfp_zone(parse_gfp("GFP_HIGHUSER_MOVABLE")) == 3
    assert gfp_zone(parse_gfp("GFP_DMA32")) == 1
    assert gfp_zone(parse_gfp("GFP_DMA")) == 0
