"""v6.10's buddy rules against those before the freelist migratetype hygiene
series (buddy_rules="v6.9", presets v6.6 and v6.9), by hand-worked cases; and
the presets' names, rules and stated gaps."""

import pytest

import pcpemu
from pcpemu.kernel.config import NOT_MODELLED, PRESETS
from pcpemu.kernel.gfp import MIGRATE_UNMOVABLE

RULES = ["v6.10", "v6.9"]


def machine(rules, **kw):
    kw.setdefault("memory", "64M")
    kw.setdefault("zones", "normal")
    kw.setdefault("cpus", 1)
    return pcpemu.Machine(pcpemu.KernelConfig.preset("v6.10", buddy_rules=rules, **kw), seed=0)


def retype(m, pfn, migratetype):
    # An isolation round trip gives a pageblock the type undo_isolate_page_range
    # is handed, as a steal that claimed it would.
    assert m.start_isolate_page_range(pfn, pfn + 512, "Movable") is None
    m.undo_isolate_page_range(pfn, pfn + 512, migratetype)


def free_pages_on(m, mt):
    lists = m.zone_state("Normal")["free_lists"]
    return sum(int(lists[o, mt]) << o for o in range(11))


@pytest.mark.parametrize("rules", RULES)
def test_cross_block_merge_adopts_the_type_only_from_v6_10(rules):
    # __free_one_page: two order-9 buddies in blocks of different mergeable
    # types merge; v6.10 retypes the buddy's block, v6.9 left it alone.
    m = machine(rules)
    a = m.alloc_pages("GFP_HIGHUSER_MOVABLE", 9)
    b = m.alloc_pages("GFP_HIGHUSER_MOVABLE", 9)
    assert a ^ b == 512
    retype(m, a, "Unmovable")                                 # claimed by a steal meanwhile
    m.free_pages(b, 9)
    m.drain_all_pages()
    m.free_pages(a, 9)
    m.drain_all_pages()
    head = min(a, b)
    assert head in m.free_list("Normal", 10, "Unmovable")
    assert m.pageblock_migratetype(b) == ("Unmovable" if rules == "v6.10" else "Movable")
    m.check()


def stolen_partial_block(rules):
    # One pageblock (8192..8703) with 300 movable pages in use and its top 212
    # pages free (largest piece: order 7 at +384); nothing else free to speak
    # of. An unmovable order-4 request must steal from it, and cannot claim
    # it (212 free + 0 alike < 256).
    m = machine(rules, min_free_kbytes=128)
    fill = []
    while (pfn := m.alloc_pages("GFP_HIGHUSER_MOVABLE", 0)) is not None:
        fill.append(pfn)
    for pfn in fill:
        if 8192 + 300 <= pfn < 8192 + 512:
            m.free_pages(pfn, 0)
    m.drain_all_pages()
    return m, m.alloc_pages("GFP_ATOMIC", 4)


def test_v6_10_steal_takes_the_piece_and_leaves_the_rest_on_the_blocks_type():
    m, pfn = stolen_partial_block("v6.10")
    assert pfn == 8192 + 384
    assert free_pages_on(m, MIGRATE_UNMOVABLE) == 0
    assert m.pageblock_migratetype(8192) == "Movable"
    assert m.stats()["PGSTEAL_BLOCK"] == 0
    m.check()


def test_v6_9_steal_moves_every_free_page_then_takes_the_smallest():
    m, pfn = stolen_partial_block("v6.9")
    assert pfn == 8192 + 304                    # the order-4 piece, now on an unmovable list
    assert free_pages_on(m, MIGRATE_UNMOVABLE) == 212 - 16
    assert m.pageblock_migratetype(8192) == "Movable"   # not claimed, pages moved anyway
    assert m.stats()["PGSTEAL_BLOCK"] == 0
    m.check()


@pytest.mark.parametrize("rules", RULES)
def test_drain_uses_the_cached_pcp_type_only_before_v6_10(rules):
    # free_pcppages_bulk: v6.10 reads the pageblock now; v6.9 used the type
    # free_unref_page_prepare cached when the page reached the pcp list.
    m = machine(rules)
    pfn = m.alloc_pages("GFP_HIGHUSER_MOVABLE", 0)
    m.drain_all_pages()
    m.free_pages(pfn, 0)                                   # cached: Movable
    retype(m, pfn, "Unmovable")
    m.drain_all_pages()
    on = "Unmovable" if rules == "v6.10" else "Movable"
    assert any(pfn in m.free_list("Normal", o, on) for o in range(11))
    m.check()


def test_highatomic_reserve_of_an_order_10_block():
    # reserve_highatomic_pageblock: v6.10 retypes both pageblocks and counts
    # 1024 pages; v6.9 retyped the first one and counted 512.
    got = {}
    for rules in RULES:
        m = machine(rules, memory="256M")
        fill = []
        while (pfn := m.alloc_pages("GFP_KERNEL", 3)) is not None:
            fill.append(pfn)
        for pfn in fill[:2048]:                            # 16384 pages: whole order-10 blocks
            m.free_pages(pfn, 3)
        m.drain_all_pages()
        while m.alloc_pages("GFP_KERNEL", 0) is not None:  # below the low mark again
            pass
        a = m.alloc_pages("GFP_ATOMIC", 10)
        assert a is not None
        got[rules] = (m.zone_state("Normal")["nr_reserved_highatomic"], m.pageblock_migratetype(a),
                      m.pageblock_migratetype(a + 512))
        m.check()
    assert got["v6.10"] == (1024, "HighAtomic", "HighAtomic")
    assert got["v6.9"] == (512, "HighAtomic", "Unmovable")


def test_presets_name_their_rules():
    assert PRESETS["v6.9"]["buddy_rules"] == PRESETS["v6.6"]["buddy_rules"] == "v6.9"
    rc5 = pcpemu.KernelConfig.preset("v6.10-rc5")
    v610 = pcpemu.KernelConfig.preset("v6.10")
    # bf14ed81f571 and its parent differ in the THP lists only (no rule change
    # of RULE_CHANGES lies between the two kernels).
    assert (rc5.thp_lists, v610.thp_lists) == ("single", "split")
    assert rc5.rule_changes == v610.rule_changes == []
    assert rc5.replace(thp_lists="split", name="v6.10", kernel="v6.10") == v610


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_states_what_it_does_not_model(name):
    assert name in NOT_MODELLED
    gaps = pcpemu.KernelConfig.preset(name).not_modelled()
    assert gaps[: len(NOT_MODELLED["*"])] == NOT_MODELLED["*"]
    if PRESETS[name].get("buddy_rules") == "v6.9":
        assert any("isolat" in g for g in gaps)


def test_buddy_rules_are_checked():
    with pytest.raises(pcpemu.ConfigError, match="buddy_rules: 'v6.8' is not one of v6.10, v6.9"):
        pcpemu.KernelConfig(buddy_rules="v6.8")
