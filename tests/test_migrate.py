"""Migration, FOLL_LONGTERM pinning, isolation and cma_alloc (pcpemu.runs.migrate),
and the seed scenario (pcpemu.runs.repro), by hand-worked cases."""

from __future__ import annotations


import pytest

import pcpemu
from pcpemu.runs import migrate as mg
from pcpemu.errors import BadPfnError, NotAllocatedError, PcpemuError
from pcpemu.kernel.gfp import GFP_FLAGS, MIGRATE_UNMOVABLE, memalloc_pin
from pcpemu.runs.repro import livelock_sweep, repro

THP = 9
ZONE = "DMA32"      # a 1 GiB machine has DMA and DMA32; CMA sits at the top of DMA32


def machine(preset: str, cpus: int = 2, cma: str = "512M") -> pcpemu.Machine:
    m = pcpemu.Machine(pcpemu.KernelConfig.preset(preset, memory="1G", cma=cma, cpus=cpus), seed=1)
    # Boot leaves the last CMA pageblock on CPU 0's THP list (cma_activate_area
    # frees through the pcp); the worked examples start from empty lists.
    m.drain_all_pages()
    return m


def in_cma(m: pcpemu.Machine, pfn: int) -> bool:
    return m.pageblock_migratetype(pfn) == "CMA"


def snapshot(m: pcpemu.Machine) -> tuple:
    """Every piece of allocator state a failed cma_alloc must leave as it was."""
    zs = m.zone_state(ZONE)
    return (m.buddyinfo(), m.pagetypeinfo(), zs["nr_free_pages"], zs["nr_free_cma"], zs["nr_free"],
            zs["free_lists"].tolist(), zs["nr_isolate_pageblock"], m.pageblock_types().tolist(),
            m.allocated_blocks().tolist())


# ---- gfp of the pin path ----

def test_pin_target_gfp_is_unmovable_transhuge_without_cma():
    # KERNEL-SPEC 7.2: (GFP_USER | __GFP_NOWARN) & ~__GFP_RECLAIM | GFP_TRANSHUGE = 0x1c24ca,
    # then memalloc_pin clears __GFP_MOVABLE: 0x1c24c2, migratetype UNMOVABLE.
    thp_gfp = (mg.GFP_LONGTERM_PIN & ~GFP_FLAGS["__GFP_RECLAIM"]) | GFP_FLAGS["GFP_TRANSHUGE"]
    assert thp_gfp == 0x1C24CA
    assert memalloc_pin(thp_gfp) == 0x1C24C2
    m = machine("v6.10")
    src = m.alloc_pages("GFP_TRANSHUGE", THP, cpu=0)
    before = m.stats()["alloc"][THP][MIGRATE_UNMOVABLE]
    mg.migrate_pages(m, [src], pin_context=True, cpu=0)
    assert m.stats()["alloc"][THP][MIGRATE_UNMOVABLE] == before + 1
    m.check()


# ---- KERNEL-SPEC 7.6 worked example ----

def _fault_one_thp(m: pcpemu.Machine) -> tuple[int, int]:
    # A movable THP fault on an empty list refills 2 CMA blocks (CMA-first):
    # C1 is returned, C2 stays on the movable-side THP list.
    c1 = m.alloc_pages("GFP_TRANSHUGE", THP, cpu=0)
    movable = m.order_to_pindex("Movable", THP)
    [c2] = m.pcp_list(ZONE, 0, movable)
    assert in_cma(m, c1) and in_cma(m, c2)
    assert m.pcp_state(ZONE, 0)["count"] == 512
    return c1, c2


def test_worked_example_single_list_pops_the_cma_thp_and_livelocks():
    m = machine("v6.9")
    c1, c2 = _fault_one_thp(m)
    moved = mg.migrate_pages(m, [c1], pin_context=True, cpu=0).moved
    assert moved == {c1: c2}                             # the UNMOVABLE target is the CMA THP
    assert m.pcp_list(ZONE, 0, 12) == [c1]                # the source went back on the shared list
    r = mg.pin_user_pages(m, [c2], cpu=0, livelock_rounds=4)
    assert r.status == "livelock"
    assert r.rounds == 5 and r.migrations == 4 and r.cma_to_cma == 4 and r.cma_to_normal == 0
    assert r.sticky_pfns == sorted([c1, c2])              # the two THPs alternate
    assert r.unpinnable_per_round == [1] * 5
    assert m.page_info(r.pages[0])["pincount"] == 1 and in_cma(m, r.pages[0])
    m.check()


def test_worked_example_split_lists_give_a_non_cma_target():
    m = machine("v6.10")
    c1, c2 = _fault_one_thp(m)
    r = mg.pin_user_pages(m, [c1], cpu=0)
    assert r.status == "pinned" and r.rounds == 2 and r.migrations == 1 and r.cma_to_normal == 1
    assert not in_cma(m, r.pages[0]) and m.page_info(r.pages[0])["pincount"] == 1
    assert m.pcp_list(ZONE, 0, 13) == [c1, c2]            # the CMA source files as movable
    assert all(not in_cma(m, p) for p in m.pcp_list(ZONE, 0, 12))
    mg.unpin_user_pages(m, r.pages)
    m.check()


def test_per_type_files_cma_thps_on_the_movable_list():
    m = machine("v5.14")
    c1, c2 = _fault_one_thp(m)
    r = mg.pin_user_pages(m, [c1], cpu=0)
    assert r.status == "pinned" and r.cma_to_cma == 0
    assert m.pcp_list(ZONE, 0, m.order_to_pindex("Movable", THP)) == [c1, c2]


def test_android_cma_thps_file_on_the_non_movable_list_and_feed_unmovable_requests():
    # Android: CMA is a pcp type, and the split files its THPs on the
    # non-movable list, so the next UNMOVABLE order-9 request pops one.
    m = machine("android")
    c1, _ = _fault_one_thp(m)
    m.free_pages(c1, THP, cpu=0)
    assert m.pcp_list(ZONE, 0, m.order_to_pindex("Unmovable", THP)) == [c1]
    k = m.alloc_pages("GFP_KERNEL | __GFP_COMP", THP, cpu=0)
    assert k == c1 and m.stats()["CMA_TO_NONMOVABLE"] == 1
    m2 = machine("v6.10")
    c1, _ = _fault_one_thp(m2)
    m2.free_pages(c1, THP, cpu=0)
    assert not in_cma(m2, m2.alloc_pages("GFP_KERNEL | __GFP_COMP", THP, cpu=0))


def test_android_livelocks_once_a_second_page_follows():
    m = machine("android")
    guest = [m.alloc_pages("GFP_TRANSHUGE", THP, cpu=0) for _ in range(2)]
    assert all(in_cma(m, p) for p in guest)
    r = mg.pin_user_pages(m, guest, cpu=0, livelock_rounds=3)
    assert r.status == "livelock" and r.cma_to_cma > 0
    m.check()


# ---- migration ----

def test_migrate_order0_moves_the_owner_and_frees_the_source_to_pcp():
    m = machine("v6.10")
    src = m.alloc_pages("GFP_HIGHUSER_MOVABLE", 0, cpu=1, owner=77)
    moved = mg.migrate_pages(m, [src], mg.GFP_CONTIG, cpu=1).moved
    dst = moved[src]
    assert dst != src and m.page_info(dst)["owner"] == 77
    assert m.page_info(src)["state"] == "pcp" and m.page_info(src)["cpu"] == 1
    mg.check_tokens(m, {77: [(dst, 0)]})


def test_migrate_refuses_pinned_or_free_pages_and_changes_nothing():
    m = machine("v6.10")
    a = m.alloc_pages("GFP_HIGHUSER_MOVABLE", 0, owner=5)
    b = m.alloc_pages("GFP_HIGHUSER_MOVABLE", 0, owner=6)
    mg.pin_user_pages(m, [b], longterm=False)
    before = snapshot(m)
    with pytest.raises(NotAllocatedError, match="pinned"):
        mg.migrate_pages(m, [a, b])
    with pytest.raises(NotAllocatedError, match="not the head"):
        mg.migrate_pages(m, [a, b + 100])
    with pytest.raises(PcpemuError, match="twice"):
        mg.migrate_pages(m, [a, a])
    with pytest.raises(BadPfnError):
        mg.migrate_pages(m, [1 << 40])
    assert snapshot(m) == before


def test_pin_errors_leave_nothing_pinned():
    m = machine("v6.10")
    a = m.alloc_pages("GFP_TRANSHUGE", THP)
    with pytest.raises(NotAllocatedError):
        mg.pin_user_pages(m, [a, a + 1])
    assert m.page_info(a)["pincount"] == 0
    with pytest.raises(NotAllocatedError, match="not pinned"):
        mg.unpin_user_pages(m, [a])
    with pytest.raises(PcpemuError, match="livelock_rounds"):
        mg.pin_user_pages(m, [a], livelock_rounds=0)
    assert mg.pin_user_pages(m, [a], longterm=False).status == "pinned"
    with pytest.raises(NotAllocatedError, match="pinned"):
        m.free_pages(a, THP)


def test_longterm_pinnable_by_pageblock_type():
    m = machine("v6.10")
    normal = m.alloc_pages("GFP_KERNEL", 0)
    cma = m.alloc_pages("GFP_HIGHUSER_MOVABLE", 0)
    assert in_cma(m, cma) and not in_cma(m, normal)
    assert mg.folio_is_longterm_pinnable(m, normal)
    assert not mg.folio_is_longterm_pinnable(m, cma)
    m.drain_all_pages()
    lo = m.config.cma_base
    assert m.start_isolate_page_range(lo, lo + 512, "CMA", 0) is None
    assert m.pageblock_migratetype(lo) == "Isolate" and not mg.folio_is_longterm_pinnable(m, lo)
    m.undo_isolate_page_range(lo, lo + 512, "CMA", 0)


# ---- isolation ----

def test_isolation_takes_free_pages_out_of_the_counters_and_undo_restores_them():
    m = machine("v6.10")
    lo = m.config.cma_base
    before = snapshot(m)
    zs = m.zone_state(ZONE)
    assert m.start_isolate_page_range(lo + 100, lo + 3 * 512 + 1, "CMA", 0) is None
    after = m.zone_state(ZONE)
    assert after["nr_isolate_pageblock"] == 4                     # whole pageblocks
    assert zs["nr_free_pages"] - after["nr_free_pages"] == 4 * 512
    assert zs["nr_free_cma"] - after["nr_free_cma"] == 4 * 512
    assert after["free_lists"][9][5] == 4                        # order-10 buddies split onto ISOLATE lists
    m.check()
    m.undo_isolate_page_range(lo + 100, lo + 3 * 512 + 1, "CMA", 0)
    assert snapshot(m) == before
    m.check()


def test_isolating_a_non_cma_block_with_an_unmovable_page_fails_and_undoes():
    m = machine("v6.10")
    k = m.alloc_pages("GFP_KERNEL", 0)
    m.drain_all_pages()
    before = snapshot(m)
    start = k & ~511
    assert m.start_isolate_page_range(start - 1024, start + 512, "Movable", 0) == k
    assert snapshot(m) == before


# ---- cma_alloc / alloc_contig_range ----

def test_cma_alloc_migrates_movable_pages_and_takes_the_range():
    m = machine("v6.10")
    lo = m.config.cma_base
    user = [m.alloc_pages("GFP_HIGHUSER_MOVABLE", 0, owner=100 + i) for i in range(8)]
    thp = m.alloc_pages("GFP_TRANSHUGE", THP, owner=200)
    assert all(in_cma(m, p) for p in user + [thp])
    m.drain_all_pages()
    free_before = m.zone_state(ZONE)["nr_free_pages"]
    res = mg.cma_alloc(m, 2048, 0, cpu=1)
    assert res.pfn == lo and len(res.candidates) == 1
    assert set(res.moved) == {p for p in user + [thp] if lo <= p < lo + 2048}
    assert all(not lo <= d < lo + 2048 for d in res.moved.values())
    expected = {100 + i: [(res.moved.get(p, p), 0)] for i, p in enumerate(user)}
    expected[200] = [(res.moved.get(thp, thp), THP)]
    expected[res.owner] = mg.aligned_blocks(lo, lo + 2048)
    mg.check_tokens(m, expected)
    assert m.zone_state(ZONE)["nr_isolate_pageblock"] == 0
    assert all(m.pageblock_migratetype(p) == "CMA" for p in range(lo, lo + 2048, 512))
    m.drain_all_pages()
    assert m.zone_state(ZONE)["nr_free_pages"] == free_before - 2048
    with pytest.raises(NotAllocatedError):
        mg.cma_release(m, lo, 1024)
    mg.cma_release(m, lo, 2048)
    del expected[res.owner]
    mg.check_tokens(m, expected)


def test_cma_alloc_next_candidate_after_a_busy_range():
    m = machine("v6.9")
    # CMA blocks are taken from the top down (boot frees them to the list
    # heads); two movable THPs above C1/C2 give the busy range a next one.
    above = [m.alloc_pages("GFP_TRANSHUGE", THP, cpu=0) for _ in range(2)]
    c1, c2 = _fault_one_thp(m)
    k = m.alloc_pages("GFP_KERNEL | __GFP_COMP", THP, cpu=0)     # pops C2: unmovable in CMA
    assert k == c2 and min(above) > k
    lo = m.config.cma_base
    below = (k - lo) // 1024 * 1024
    assert mg.cma_alloc(m, below, 9, cpu=0).pfn == lo           # the free ranges under k's
    res = mg.cma_alloc(m, 1024, 9, cpu=0)
    blocked = [c for c in res.candidates if c["ret"] == -mg.EBUSY]
    assert res.pfn is not None and not res.pfn <= k < res.pfn + 1024
    assert any(b["pfn"] == k and b["why"] == "unmovable" for c in blocked for b in c["blockers"])
    assert res.pfn >= lo


@pytest.mark.parametrize("why", ["unmovable", "pinned"])
def test_cma_alloc_failure_leaves_the_machine_exactly_as_before(why):
    m = machine("v6.9")
    c1, c2 = _fault_one_thp(m)
    if why == "unmovable":
        blocker = m.alloc_pages("GFP_KERNEL | __GFP_COMP", THP, cpu=0)
        assert blocker == c2
        m.free_pages(c1, THP, cpu=0)        # else migration would move it, as in the kernel
    else:
        blocker = c1
        mg.pin_user_pages(m, [c1], longterm=False)
    m.drain_all_pages()
    before = snapshot(m)
    res = mg.cma_alloc(m, m.config.cma, 0, cpu=1)               # the whole area: one candidate
    assert res.pfn is None and len(res.candidates) == 1
    assert res.candidates[0]["ret"] == -mg.EBUSY
    assert [(b["pfn"], b["why"]) for b in res.blockers] == [(blocker, why)]
    assert snapshot(m) == before
    m.check()


def test_cma_alloc_bad_arguments_change_nothing():
    m = machine("v6.10")
    before = snapshot(m)
    for count, align in [(0, 0), (m.config.cma + 1, 0), (True, 0), (16, -1), (16, 99)]:
        with pytest.raises(PcpemuError):
            mg.cma_alloc(m, count, align)
    with pytest.raises(BadPfnError):
        mg.alloc_contig_range(m, 0, 512)
    with pytest.raises(PcpemuError, match="no CMA"):
        mg.cma_alloc(pcpemu.Machine(pcpemu.KernelConfig.preset("v6.10", memory="1G", cpus=2)), 16)
    assert snapshot(m) == before


# ---- the scenario ----

SMALL = dict(memory="4G", cma="2G", guest="256M")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_scenario_outcome_by_policy(seed):
    r = repro(seed=seed, **SMALL)
    single, split, per_type, android = (r.by_policy(p) for p in ("single", "split", "per-type", "android"))
    assert single.guest_thps_in_cma > 0
    assert single.livelock and single.cma_to_cma > single.guest_thps_in_cma
    assert single.pinned_in_cma > 0 and not single.cma_alloc_ok
    assert single.cma_blockers.get("pinned", 0) > 0
    for fixed in (split, per_type):
        assert fixed.pin_status == "pinned" and fixed.pin_rounds == 2
        assert fixed.cma_to_cma == 0 and fixed.pinned_in_cma == 0
        assert fixed.unmovable_in_cma == 0 and fixed.cma_to_nonmovable == 0
        assert fixed.cma_alloc_ok and fixed.cma_blockers == {}
    assert android.livelock and android.cma_to_nonmovable > 0


def test_livelock_needs_cma_first_placement():
    # __rmqueue hands movable THPs CMA first only while free CMA exceeds half
    # of all free pages: below that the guest is not in CMA, nothing migrates.
    rates = livelock_sweep(fractions=(0.25, 0.4375, 0.46875, 0.5), seeds=(1, 2, 3))
    assert rates == {0.25: 0.0, 0.4375: 0.0, 0.46875: 1.0, 0.5: 1.0}
    assert set(livelock_sweep(fractions=(0.5,), seeds=(1, 2), policy="split").values()) == {0.0}


def test_a_pin_that_runs_out_of_targets_leaves_what_it_migrated_where_it_moved():
    # FOLL_LONGTERM migrates the CMA pages of the range one by one; when a target
    # cannot be allocated the pin fails (ENOMEM) but the pages already migrated stay
    # migrated: PinResult.pages is where the range maps now, the moved blocks keep
    # their owners' tokens there and the old CMA blocks are free. (Hypothesis found
    # this in the stateful pinning model, whose bookkeeping ignored the move.)
    m = pcpemu.Machine(pcpemu.KernelConfig.preset("v6.10", memory="64M", zones="normal", cpus=2, cma="36M"), seed=0)
    blocks, token = {}, 1
    thp, small = "GFP_TRANSHUGE | __GFP_COMP", "GFP_HIGHUSER_MOVABLE"

    def alloc(gfp):
        nonlocal token
        order = 9 if "TRANSHUGE" in gfp else 0
        pfn = m.alloc_pages(gfp, order, 0, owner=token)
        if pfn is not None:
            blocks[token] = (pfn, order)
            token += 1

    def pin(tokens):
        res = mg.pin_user_pages(m, [blocks[t][0] for t in tokens])
        for t, new in zip(tokens, res.pages):
            blocks[t] = (new, blocks[t][1])
        return res

    for step in (thp, [1], thp, [2], small, thp, [3, 4], small, [5], thp, thp, small, thp, [6, 7], thp, [8, 9],
                 [10], thp, [11], thp, thp, [12], thp, [13], thp, thp):
        pin(step) if isinstance(step, list) else alloc(step)
    before = [blocks[t][0] for t in (14, 15, 16)]
    res = pin([14, 15, 16])
    assert res.status == "enomem" and res.migrations == 2
    assert res.pages[2] == before[2] and all(new != old for new, old in zip(res.pages[:2], before[:2]))
    mg.check_tokens(m, {t: [b] for t, b in blocks.items()})
    assert all(m.page_info(p)["state"] == "free" for p in before[:2])
    m.check()
