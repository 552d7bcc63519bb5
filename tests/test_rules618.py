"""The rules kernels after v6.10 changed (pcpemu.kernel.config.RULE_CHANGES).

Each test runs the same ops on the kernel just before a change and on the one
that has it, so that only that change can explain the difference.
"""

import pytest

from pcpemu import ConfigError, KernelConfig, Machine
from pcpemu.kernel.config import PRESETS, RULE_CHANGES, release_rules
from pcpemu.runs.kstate import batched_to_drain

MOVABLE = "GFP_HIGHUSER_MOVABLE"


def machine(kernel, pages=262144, **kw):
    return Machine(KernelConfig(zones={"Normal": pages}, cpus=1, kernel=kernel, **kw))


def test_rule_changes_cite_commits_and_the_v6_18_preset_has_those_up_to_it():
    # v6.18.0 has every change up to v6.18; 6.18.y from 6.18.7 the v6.19 one it got too.
    cfg = KernelConfig.preset("v6.18")
    assert cfg.rule_changes == [r for r in RULE_CHANGES if r.since != "v6.19"]
    assert KernelConfig.preset("v6.18", kernel="6.18.7").rule_changes == [r for r in RULE_CHANGES
                                                                          if r.commit != "91e691296646"]
    assert KernelConfig.preset("v6.10").rule_changes == []
    assert PRESETS["v6.18"]["kernel"] == "v6.18"
    for r in RULE_CHANGES:
        assert r.since.startswith("v6.") and r.commit and r.change


def _release_config(release):
    rules = release_rules(release)
    return rules, KernelConfig.preset(rules.preset, **rules.overrides)


@pytest.mark.parametrize("release, preset, kernel, thp_lists, flags", [
    ("6.18.44-fc-v669", "v6.18", "v6.18.44", "split",                 # with a stable backport
     {"free_highatomic", "highatomic_non_block", "claim_steal", "free_high_min", "decay_batched"}),
    ("6.18.6", "v6.18", "v6.18", "split", {"free_highatomic", "highatomic_non_block", "claim_steal", "free_high_min"}),
    ("6.12.3", "v6.18", "v6.12.3", "split", {"free_highatomic", "highatomic_non_block"}),
    ("6.12.66", "v6.18", "v6.12.66", "split", {"free_highatomic", "highatomic_non_block"}),
    ("6.12.67", "v6.18", "v6.12.67", "split",                     # fc4b909c368f backported
     {"free_highatomic", "highatomic_non_block", "decay_batched"}),
    ("6.14.6", "v6.18", "v6.14.6", "split", {"free_highatomic", "highatomic_non_block"}),
    ("6.14.7", "v6.18", "v6.14.7", "split",                       # c2f6ea38fc, 90abee6d7895 backported
     {"free_highatomic", "highatomic_non_block", "claim_steal"}),
    ("6.15.0-rc2", "v6.18", "v6.15", "split", {"free_highatomic", "highatomic_non_block", "claim_steal"}),
    ("6.11.11", "v6.18", "v6.11.11", "split", {"highatomic_non_block"}),     # a stable backport
    ("6.11.10", "v6.18", "v6.11.10", "split", set()),
    ("6.10.14", "v6.18", "v6.10.14", "split", set()),
    ("6.9.3", "v6.9", "v6.9", "single", set()),
    ("6.9.8", "v6.9", "v6.9", "split", set()),                  # bf14ed81f571 backported
    ("6.6.36", "v6.6", "v6.6", "single", set()),
    ("6.6.37-lts", "v6.6", "v6.6", "split", set()),
    ("6.1.50", "v6.6", "v6.1.50", "single", set()),             # one THP list since v6.0
    ("5.15.0-91-generic", "v5.14", "v5.15", "per-type", set()),
    ("6.19.1", "v6.18", "v6.18.7", "split",                      # v6.19's fc4b909c368f, as 6.18.7 has it,
     {"free_highatomic", "highatomic_non_block", "claim_steal", "free_high_min", "decay_batched",
      "free_batched"}),                                          # and 91e691296646 on top
    ("7.1.0-rc2", "v6.18", "v6.18.7", "split",
     {"free_highatomic", "highatomic_non_block", "claim_steal", "free_high_min", "decay_batched",
      "free_batched"}),
])
def test_release_rules_follow_the_traced_release(release, preset, kernel, thp_lists, flags):
    rules, cfg = _release_config(release)
    assert (rules.preset, cfg.kernel, cfg.thp_lists) == (preset, kernel, thp_lists)
    assert {r.flag for r in cfg.rule_changes if r.flag} == flags == cfg.rule_flags
    assert bool(rules.note) == bool(rules.overrides)     # a choice is said
    # A release past the newest modelled one says so, and what it was run at.
    assert ("newer than v6.18" in rules.note) == (release[:4] in ("6.19", "7.1."))


def test_release_rules_say_what_they_leave_out():
    assert release_rules("6.12.3").note == "the v6.18 preset at kernel v6.12.3: the rule changes after v6.12.3 are left out"
    assert "newer than v6.18" in release_rules("7.0.0").note
    assert "v6.1.50's differences from v6.6 are not modelled" in release_rules("6.1.50").note
    assert "carries bf14ed81f571" in release_rules("6.6.40").note
    for bad, match in (("4.19.0", "the oldest is v5.14"), ("linux", "cannot read the kernel version")):
        with pytest.raises(ConfigError, match=match):
            release_rules(bad)


def _fragment(m, keep_free):
    # Fill the zone with movable pages (the machine has no min watermark to
    # hold pages back), then free in every pageblock the pfns keep_free(offset)
    # selects, and drain them to the buddy.
    pfns = []
    while True:
        while (p := m.alloc_pages(MOVABLE)) is not None:
            pfns.append(p)
        m.drain_all_pages()                      # the pages other pcp lists held
        if (p := m.alloc_pages(MOVABLE)) is None:
            break
        pfns.append(p)
    assert m.zone_state("Normal")["nr_free_pages"] == 0
    for p in pfns:
        if keep_free(p % 512):
            m.free_pages(p)
    m.drain_all_pages()


@pytest.mark.parametrize("kernel", ["v6.14", "v6.15"])
def test_unmovable_fallback_claims_or_steals_the_smallest_block(kernel):
    # Each pageblock keeps 128 + 64 + 1 free pages (an order-7, an order-6 and an
    # order-0 block): too few to claim the block (256). v6.10..v6.14 split the
    # largest block of another type anyway; v6.15 (c2f6ea38fc) tries to claim
    # at every order, then steals the smallest block.
    m = machine(kernel, min_free_kbytes=0, watermark_scale_factor=1)
    _fragment(m, lambda off: 128 <= off < 256 or 384 <= off < 448 or off == 500)
    before = m.stats()
    p = m.alloc_pages("GFP_KERNEL")
    after = m.stats()
    assert m.pageblock_migratetype(p) == "Movable"          # stolen, not claimed
    boosts, fallbacks = (after[k] - before[k] for k in ("WMARK_BOOST", "PGALLOC_FALLBACK"))
    assert fallbacks > 1                                     # the whole pcp refill fell back
    if kernel == "v6.14":
        assert p % 512 == 128                                # the head of an order-7 block
        assert boosts == fallbacks                           # every steal boosts
    else:
        assert p % 512 == 500                                # a lone free page
        # Only the failed claims boost: one at each order holding a block
        # (7, 6, 0) before the first steal; the refill then stays in steal mode.
        assert boosts == 3
    m.check()


@pytest.mark.parametrize("kernel", ["v6.14", "v6.15"])
def test_a_refill_keeps_stealing_once_it_stole(kernel):
    # rmqueue_bulk from v6.15 (90abee6d7895) remembers the steal mode: the whole
    # refill comes from the smallest blocks, which are the lone pages here.
    m = machine(kernel, min_free_kbytes=0, watermark_scale_factor=1)
    _fragment(m, lambda off: 128 <= off < 256 or off in (500, 502, 504, 506))
    m.alloc_pages("GFP_KERNEL")
    pcp = m.pcp_list("Normal", 0, m.order_to_pindex("Unmovable", 0))
    lone = sum(1 for p in pcp if p % 512 >= 500)
    assert lone == (len(pcp) if kernel == "v6.15" else 0)
    m.check()


@pytest.mark.parametrize("kernel", ["v6.15", "v6.16"])
def test_free_high_needs_a_longer_run_of_frees_from_v6_16(kernel):
    # free_high drains early after consecutive order-1..3 frees: at
    # free_count >= batch before v6.16, batch + high_min / 2 from c544a952ba61.
    # 4 CPUs keep high_min (1760) low enough for free_count (capped at
    # batch << 5 = 2016) to reach the new threshold (943).
    m = Machine(KernelConfig(zones={"Normal": 262144}, cpus=4, kernel=kernel))
    blocks = [m.alloc_pages("GFP_KERNEL", order=2) for _ in range(400)]
    m.drain_all_pages()
    pcp = m.pcp_state("Normal", 0)
    threshold = pcp["batch"] + (pcp["high_min"] // 2 if kernel == "v6.16" else 0)
    assert threshold < pcp["batch"] << 5
    drains = m.stats()["PCP_DRAIN"]
    for i, p in enumerate(blocks):
        before = m.pcp_state("Normal", 0)
        m.free_pages(p, order=2)
        if m.stats()["PCP_DRAIN"] != drains:
            break
    assert before["count"] + 4 < m.pcp_state("Normal", 0)["high"] or before["count"] + 4 < pcp["high_min"]
    assert before["free_count"] >= threshold > before["free_count"] - 4   # the first free that reached it
    assert i == -(-threshold // 4)
    m.check()


@pytest.mark.parametrize("kernel", ["v6.18", "v6.18.7"])
def test_decay_drains_in_calls_of_a_batch_from_6_18_7(kernel):
    # fc4b909c368f (v6.19; 6.18.7): decay_pcp_high drains count - high in
    # free_pcppages_bulk calls of pcp->batch pages, each from the first list, so a
    # call that reaches the THP list frees a whole block for its share. Before, one
    # call ended at most a block past count - high. 4 CPUs keep high_min below the
    # count: 20 order-0 pages and six THP blocks.
    m = Machine(KernelConfig(zones={"Normal": 262144}, cpus=4, kernel=kernel))
    for p in [m.alloc_pages(MOVABLE) for _ in range(6000)]:      # refills raise high to high_max
        assert p is not None
    m.drain_local_pages("Normal", 0)
    thps, small = [m.alloc_pages(MOVABLE, order=9) for _ in range(6)], [m.alloc_pages(MOVABLE) for _ in range(20)]
    m.drain_local_pages("Normal", 0)
    for p in thps:
        m.free_pages(p, order=9)
    for p in small:
        m.free_pages(p)
    while True:
        before = m.pcp_state("Normal", 0)
        with m.tracing() as trace:
            m.decay_pcp_high(0)
        if len(trace.events):
            break
    to_drain = before["count"] - m.pcp_state("Normal", 0)["high"]
    blocks = (1 << trace.events["order"].astype(int)).tolist()
    assert blocks[:20] == [1] * 20 and set(blocks[20:]) == {512}
    if kernel == "v6.18":
        assert len(blocks) == 21 and sum(blocks) - 512 < to_drain      # ends in the first THP block
    else:
        assert len(blocks) == 20 + -(-to_drain // 63)           # each call ends in a THP block
        assert to_drain <= batched_to_drain(blocks, before["batch"]) < to_drain + before["batch"]
    m.check()


@pytest.mark.parametrize("later", [(), ("91e691296646",)])
def test_a_free_drains_in_calls_of_a_batch_with_v6_19s_change(later):
    # 91e691296646 (v6.19): free_frozen_page_commit frees nr_pcp_free's pages in
    # free_pcppages_bulk calls of pcp->batch pages, each from the freed page's list and
    # ending in the block that reaches its share, until the share is freed or the pcp
    # is empty. Freeing THPs: one call frees nr_pcp_free's pages rounded up to whole
    # blocks under one zone->lock; the calls free a block each, under a lock each.
    m = Machine(KernelConfig.preset("v6.18", zones={"Normal": 1 << 20}, cpus=1, later_changes=later))
    thps = [m.alloc_pages(MOVABLE, order=9) for _ in range(40)]
    m.drain_all_pages()
    for p in thps:
        before = m.pcp_state("Normal", 0)
        snap = m.stats_snapshot()
        with m.tracing() as trace:
            m.free_pages(p, order=9)
        if len(trace.events) > 1:
            break
    drained = trace.events[1:]                   # the free's own event, then the drain's
    assert set(drained["order"].tolist()) == {9}
    free_count = before["free_count"] + (512 if before["free_count"] < before["batch"] << 5 else 0)
    to_free = min(free_count, before["high"] - before["batch"])          # nr_pcp_free
    blocks_held = before["count"] // 512 + 1
    locks = m.stats_delta(snap)["zone_lock"]["free_pcppages_bulk"]
    if later:
        assert len(drained) == locks == min(-(-to_free // before["batch"]), blocks_held)
        assert m.pcp_state("Normal", 0)["count"] == (blocks_held - len(drained)) * 512
    else:
        assert len(drained) == -(-to_free // 512) and locks == 1
    m.check()


@pytest.mark.parametrize("kernel", ["v6.11", "v6.12"])
def test_watermarks_hold_back_free_highatomic_pages_only_from_v6_12(kernel):
    m = machine(kernel, pages=65536)
    while m.alloc_pages("GFP_HIGHUSER_MOVABLE", order=4) is not None:
        pass
    assert m.alloc_pages("GFP_ATOMIC", order=1) is not None      # reserves a highatomic block
    zs = m.zone_state("Normal")
    assert zs["nr_reserved_highatomic"] == 512
    # Atomic order-4 requests eat the reserve from its own lists.
    while m.zone_state("Normal")["nr_free_highatomic"] >= 16 + 2:
        assert m.alloc_pages("GFP_ATOMIC", order=4) is not None
    zs = m.zone_state("Normal")
    assert zs["nr_free_highatomic"] < 32 and zs["nr_reserved_highatomic"] == 512
    m.check()
    # Now the zone's free pages hold only a few highatomic ones. A GFP_KERNEL
    # request at the low watermark counts the whole reserve as unusable before
    # v6.12, only its free pages after.
    # Free movable order-4 blocks until the free pages, less the free
    # highatomic ones, are above the low watermark, but not less the whole reserve.
    low = m.populated_zones[0].watermark[1]
    movable = [p for p in range(0, 65536, 16) if m.page_info(p).get("state") == "allocated"
               and m.page_info(p).get("order") == 4 and m.pageblock_migratetype(p) == "Movable"]
    for p in movable:
        zs = m.zone_state("Normal")
        if zs["nr_free_pages"] - zs["nr_free_highatomic"] > low + 16:
            break
        m.free_pages(p, order=4)
    zs = m.zone_state("Normal")
    assert zs["nr_free_pages"] - 512 <= low < zs["nr_free_pages"] - zs["nr_free_highatomic"]
    slow = m.stats()["SLOWPATH"]
    m.alloc_pages("GFP_KERNEL")
    assert (m.stats()["SLOWPATH"] > slow) == (kernel == "v6.11")


@pytest.mark.parametrize("kernel", ["v6.11", "v6.12"])
def test_atomic_order0_requests_take_the_highatomic_reserve_from_v6_12(kernel):
    # All free pages sit in a highatomic block. The atomic watermark counts them
    # (ALLOC_NON_BLOCK is a reserve flag), but before 281dd25c1a01 only
    # ALLOC_OOM requests could take them: every GFP_ATOMIC order-0 request failed.
    m = machine(kernel, pages=65536, min_free_kbytes=1024)
    while m.alloc_pages(MOVABLE, order=4) is not None:
        pass
    assert m.alloc_pages("GFP_ATOMIC", order=1) is not None         # reserves the block
    zs = m.zone_state("Normal")
    assert zs["nr_free_pages"] == zs["nr_free_highatomic"] > 0
    taken = 0
    while m.alloc_pages("GFP_ATOMIC") is not None:
        taken += 1
    after = m.zone_state("Normal")["nr_free_highatomic"]
    if kernel == "v6.11":
        assert taken == 0 and after == zs["nr_free_highatomic"]
    else:
        # Down to the atomic min watermark (__zone_watermark_ok): __GFP_HIGH
        # halves min, ALLOC_NON_BLOCK takes a quarter of the rest.
        half = m.populated_zones[0].watermark[0]
        half -= half // 2
        assert taken == zs["nr_free_highatomic"] - after and after == half - half // 4
    m.check()


@pytest.mark.parametrize("seed, kernel", [(0, "v6.18"), (1, "v6.18"), (2, "v6.18.44")])
def test_v6_18_rules_keep_every_invariant_under_pressure(seed, kernel):
    # A crowded two-zone machine with CMA: claims, steals, highatomic reserves,
    # free_high drains and decay (batched on 6.18.44) all run; check() verifies free
    # lists, counters (nr_free_highatomic included) and pcp lists after each phase.
    from pcpemu.runs import workloads
    m = Machine(KernelConfig.preset("v6.18", memory="96M", cma="16M", cpus=2, kernel=kernel), seed=seed)
    classes = (("GFP_KERNEL", 0, 0.3), ("GFP_HIGHUSER_MOVABLE", 0, 0.3), ("GFP_ATOMIC", 1, 0.1),
               ("GFP_KERNEL", 3, 0.1), ("GFP_HIGHUSER_MOVABLE | __GFP_COMP", 9, 0.05),
               ("__GFP_RECLAIMABLE | GFP_KERNEL", 2, 0.15))
    before = m.stats()
    for phase in range(3):
        m.run(workloads.churn(20000, classes, live=9000, cpus=(0, 1), seed=seed * 10 + phase,
                              slot_base=phase * 100000))
        m.check()
        m.decay_pcp_high(phase % 2)
        m.drain_all_pages()
        m.check()
    st = m.stats()
    assert st["PGALLOC_FALLBACK"] > before["PGALLOC_FALLBACK"] and st["ALLOC_FAILED"] > 0


def test_a_release_past_v6_18_applies_the_later_changes_it_models_and_names_the_others(monkeypatch):
    # A later change no 6.18.y release carries goes on top of the 6.18.y release that
    # carries the others (later_changes) when pcpemu models it (v6.19's batched
    # free_frozen_page_commit); one it does not model (added here) is named, not applied.
    from pcpemu.kernel import config
    extra = config.RuleChange("v6.19", "0123456789ab", "a v6.19 change only mainline has", "somewhere", "")
    monkeypatch.setattr(config, "RULE_CHANGES", config.RULE_CHANGES + (extra,))
    rules = release_rules("6.19.3")
    assert rules.overrides == {"kernel": "v6.18.7", "later_changes": ("91e691296646",)}
    assert ("run at v6.18.7, which carries the later changes fc4b909c368f; with the later changes 91e691296646 "
            "applied; not applied: 0123456789ab") in rules.note
    assert release_rules("6.18.9").overrides == {"kernel": "v6.18.9"}      # the series itself is unchanged


def test_a_release_past_v6_18_with_no_later_change_6_18_y_carries_gets_v6_18_0(monkeypatch):
    # Without a later change that a 6.18.y release carries: v6.18.0's rules with the
    # later changes pcpemu models on top.
    from pcpemu.kernel import config
    monkeypatch.setattr(config, "RULE_CHANGES", tuple(r for r in config.RULE_CHANGES if not r.backports
                                                      or r.since != "v6.19"))
    rules = release_rules("6.19.3")
    assert (rules.preset, rules.overrides) == ("v6.18", {"later_changes": ("91e691296646",)})
    assert rules.note.endswith("with the later changes 91e691296646 applied; its other changes are not modelled")
