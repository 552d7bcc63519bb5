"""Random alloc/free/drain sequences against a reference model, check() after every step."""

import hypothesis.strategies as st
import numpy as np
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, initialize, invariant, precondition, rule

import pcpemu
from pcpemu.kernel.gfp import MIGRATE_CMA, MIGRATE_PCPTYPES, MIGRATETYPE_NAMES

CLASSES = ["GFP_KERNEL", "GFP_HIGHUSER_MOVABLE", "GFP_KERNEL | __GFP_RECLAIMABLE",
           "GFP_TRANSHUGE_LIGHT | __GFP_COMP", "GFP_KERNEL | __GFP_COMP", "GFP_DMA32", "GFP_ATOMIC"]


class AllocatorModel(RuleBasedStateMachine):
    allocated = Bundle("allocated")

    @initialize(preset=st.sampled_from(["v6.6", "v6.9", "v6.10-rc5", "v6.10", "v6.18", "v5.14", "android",
                                        "nothp"]),
                cma=st.sampled_from([0, 4, 14]), layout=st.sampled_from(["x86_64", "normal"]))
    def boot(self, preset, cma, layout):
        cfg = pcpemu.KernelConfig.preset(preset, memory="48M", zones=layout, cpus=3, cma=cma * 512)
        self.m = pcpemu.Machine(cfg, seed=0)
        self.boot_buddyinfo = self.m.buddyinfo()
        self.total = sum(z.managed for z in self.m.zones)
        self.live = {}          # pfn -> order: the reference model

    @rule(target=allocated, gfp=st.sampled_from(CLASSES), order=st.sampled_from([0, 0, 1, 2, 3, 4, 9, 10]),
          cpu=st.integers(0, 2))
    def alloc(self, gfp, order, cpu):
        pfn = self.m.alloc_pages(gfp, order, cpu)
        if pfn is None:
            return None
        assert pfn % (1 << order) == 0
        for other, o in self.live.items():        # no overlap with any live block
            assert pfn + (1 << order) <= other or other + (1 << o) <= pfn
        self.live[pfn] = order
        return pfn

    @rule(pfn=consumes(allocated), cpu=st.integers(0, 2))
    def free(self, pfn, cpu):
        if pfn is None:
            return
        order = self.live.pop(pfn)
        self.m.free_pages(pfn, order, cpu)

    @rule(cpu=st.integers(0, 2))
    def drain(self, cpu):
        self.m.drain_pages(cpu)

    @rule(cpu=st.integers(0, 2))
    def decay(self, cpu):
        self.m.decay_pcp_high(cpu)

    @rule(gfp=st.sampled_from(CLASSES), order=st.sampled_from([0, 1, 3, 4, 9]), cpu=st.integers(0, 2))
    def double_free_is_refused(self, gfp, order, cpu):
        # Free a block twice: the second free finds it on a pcp list or in the buddy.
        pfn = self.m.alloc_pages(gfp, order, cpu)
        if pfn is None:
            return
        self.m.free_pages(pfn, order, cpu)
        before = (self.m.buddyinfo(), self.m.stats())
        try:
            self.m.free_pages(pfn, order, cpu)
        except pcpemu.DoubleFreeError:
            pass
        else:
            raise AssertionError("a double free was accepted")
        assert (self.m.buddyinfo(), self.m.stats()) == before

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def wrong_order_free_is_refused(self, data):
        pfn = data.draw(st.sampled_from(sorted(self.live)))
        before = self.m.buddyinfo()
        try:
            self.m.free_pages(pfn, self.live[pfn] + 1 if self.live[pfn] < 10 else 0)
        except pcpemu.WrongOrderError:
            pass
        else:
            raise AssertionError("a free with the wrong order was accepted")
        assert self.m.buddyinfo() == before

    @invariant()
    def consistent(self):
        self.m.check()
        free = sum(self.m.zone_state(z.name)["nr_free_pages"] for z in self.m.populated_zones)
        pcp = sum(self.m.pcp_state(z.name, c)["count"] for z in self.m.populated_zones for c in range(3))
        assert free + pcp + sum(1 << o for o in self.live.values()) == self.total

    def teardown(self):
        for pfn, order in list(self.live.items()):
            self.m.free_pages(pfn, order, 0)
        self.m.drain_all_pages()
        self.m.check()
        assert self.m.buddyinfo() == self.boot_buddyinfo


TestAllocator = AllocatorModel.TestCase


def buddy_free_blocks(m: pcpemu.Machine, live: dict[int, int]) -> dict[str, np.ndarray]:
    """The reference model's buddy: from the blocks it knows are allocated and
    the pcp lists (read from the machine), every other page is free, and the
    free blocks are the largest aligned ones, merged across pageblocks only
    when the two types may merge (__free_one_page). With no isolation and no
    highatomic reserve (these machines are too small for one), that is exactly
    the buddy's state, under v6.10's rules and v6.9's alike.

    :return: zone name -> blocks per (order, migratetype of the head's pageblock).
    """
    n = m.config.memory
    edges = np.zeros(n + 1, np.int64)
    starts = np.fromiter(live, np.int64, len(live))
    sizes = np.left_shift(1, np.fromiter(live.values(), np.int64, len(live)))
    for z in m.populated_zones:
        for cpu in range(m.config.cpus):
            for pindex, order in enumerate(m.pindex_order):
                pfns = np.array(m.pcp_list(z.name, cpu, pindex), np.int64)
                starts = np.concatenate([starts, pfns])
                sizes = np.concatenate([sizes, np.full(len(pfns), 1 << order, np.int64)])
    np.add.at(edges, starts, 1)
    np.add.at(edges, starts + sizes, -1)
    free = np.cumsum(edges[:n]) == 0
    types = m.pageblock_types()
    mergeable = types < MIGRATE_PCPTYPES
    may_merge = (types[0::2] == types[1::2]) | (mergeable[0::2] & mergeable[1::2])
    heads = {}
    inside = np.zeros(n >> 10, bool)        # part of a larger free block
    for order in range(10, -1, -1):
        full = free.reshape(-1, 1 << order).all(axis=1)
        head = full & ~inside
        if order == 10:
            head &= may_merge
        heads[order] = np.nonzero(head)[0] << order
        if order:
            inside = np.repeat(inside | head, 2)
    out = {}
    for z in m.populated_zones:
        counts = np.zeros((11, len(MIGRATETYPE_NAMES)), np.int64)
        for order, pfns in heads.items():
            pfns = pfns[(pfns >= z.start_pfn) & (pfns < z.start_pfn + z.spanned)]
            np.add.at(counts[order], types[pfns >> 9], 1)
        out[z.name] = counts
    return out


class PressureModel(RuleBasedStateMachine):
    """Multi-zone machines with CMA, driven into the slow path: bulk allocations
    until failure, frees, drains and pcp decay, under every rule set and both
    reclaim outcomes. The reference model knows the free blocks per order and
    migratetype of every zone (buddy_free_blocks)."""

    allocated = Bundle("allocated")

    @initialize(preset=st.sampled_from(["v6.6", "v6.9", "v6.10-rc5", "v6.10", "v6.18", "android"]),
                cma=st.sampled_from([0, 6, 14]), reclaim=st.sampled_from(["progress", "none"]))
    def boot(self, preset, cma, reclaim):
        cfg = pcpemu.KernelConfig.preset(preset, memory="48M", zones="x86_64", cpus=2, cma=cma * 512,
                                         reclaim=reclaim)
        self.m = pcpemu.Machine(cfg, seed=0)
        self.total = sum(z.managed for z in self.m.zones)
        self.hygiene = cfg.buddy_rules == "v6.10"
        self.live = {}

    def _alloc(self, gfp, order, cpu):
        pfn = self.m.alloc_pages(gfp, order, cpu)
        if pfn is not None:
            assert pfn % (1 << order) == 0 and pfn not in self.live
            self.live[pfn] = order
        return pfn

    @rule(target=allocated, gfp=st.sampled_from(CLASSES), order=st.sampled_from([0, 1, 3, 9]),
          cpu=st.integers(0, 1))
    def alloc(self, gfp, order, cpu):
        return self._alloc(gfp, order, cpu)

    @rule(gfp=st.sampled_from(["GFP_KERNEL", "GFP_HIGHUSER_MOVABLE", "GFP_DMA32 | __GFP_MOVABLE",
                               "GFP_KERNEL | __GFP_RECLAIMABLE", "GFP_ATOMIC"]),
          order=st.sampled_from([0, 2, 4, 9]), cpu=st.integers(0, 1), limit=st.sampled_from([64, 4096]))
    def pressure(self, gfp, order, cpu, limit):
        # Allocate until the request fails: the slow path, its drains and its
        # retries are exercised at every step that ends here.
        for _ in range(limit):
            if self._alloc(gfp, order, cpu) is None:
                break

    @rule(pfn=consumes(allocated), cpu=st.integers(0, 1))
    def free(self, pfn, cpu):
        if pfn is not None and pfn in self.live:
            self.m.free_pages(pfn, self.live.pop(pfn), cpu)

    @precondition(lambda self: self.live)
    @rule(data=st.data(), cpu=st.integers(0, 1))
    def free_many(self, data, cpu):
        pfns = sorted(self.live)
        step = data.draw(st.sampled_from([2, 3, 7]))
        for pfn in pfns[data.draw(st.integers(0, step - 1))::step]:
            self.m.free_pages(pfn, self.live.pop(pfn), cpu)

    @rule(cpu=st.integers(0, 1))
    def drain(self, cpu):
        self.m.drain_pages(cpu)

    @rule()
    def drain_all(self):
        self.m.drain_all_pages()

    @rule(cpu=st.integers(0, 1))
    def decay(self, cpu):
        self.m.decay_pcp_high(cpu)

    @invariant()
    def matches_the_reference(self):
        self.m.check()
        expected = buddy_free_blocks(self.m, self.live)
        free = pcp = 0
        for z in self.m.populated_zones:
            zs = self.m.zone_state(z.name)
            got, want = zs["free_lists"], expected[z.name]
            if self.hygiene:
                np.testing.assert_array_equal(got, want, err_msg=f"zone {z.name}: blocks per order and type")
            else:
                # v6.9: a free list may hold pages of another pcp type's block;
                # CMA pages never leave their own lists.
                np.testing.assert_array_equal(got.sum(axis=1), want.sum(axis=1), err_msg=f"zone {z.name}")
                np.testing.assert_array_equal(got[:, MIGRATE_CMA], want[:, MIGRATE_CMA], err_msg=f"zone {z.name}")
            pages = (want.sum(axis=1) << np.arange(11)).sum()
            assert zs["nr_free_pages"] == pages
            assert zs["nr_free_cma"] == (want[:, MIGRATE_CMA] << np.arange(11)).sum()
            free += pages
            pcp += sum(self.m.pcp_state(z.name, c)["count"] for c in range(2))
        assert free + pcp + sum(1 << o for o in self.live.values()) == self.total
        for line in self.m.buddyinfo().splitlines():
            name, *counts = line.split("zone")[1].split()
            assert [int(c) for c in counts] == expected[name].sum(axis=1).tolist()

    def teardown(self):
        for pfn, order in list(self.live.items()):
            self.m.free_pages(pfn, order, 0)
        self.m.drain_all_pages()
        self.live = {}
        self.matches_the_reference()


TestPressure = PressureModel.TestCase


class PinningModel(RuleBasedStateMachine):
    """Allocations, FOLL_LONGTERM pins, cma_alloc and frees; every block's owner
    token must stay with its data through every migration."""

    @initialize(preset=st.sampled_from(["v6.9", "v6.10", "android"]))
    def boot(self, preset):
        from pcpemu.runs import migrate

        self.migrate = migrate
        self.m = pcpemu.Machine(pcpemu.KernelConfig.preset(preset, memory="64M", zones="normal", cpus=2,
                                                           cma="36M"), seed=0)
        self.blocks = {}         # owner token -> (pfn, order)
        self.pinned = set()      # owner tokens pinned
        self.ranges = []         # (pfn, count, owner) from cma_alloc
        self.next = 1

    def _moved(self, moved):
        for token, (pfn, order) in list(self.blocks.items()):
            if pfn in moved:
                self.blocks[token] = (moved[pfn], order)

    @rule(gfp=st.sampled_from(["GFP_HIGHUSER_MOVABLE", "GFP_TRANSHUGE | __GFP_COMP", "GFP_KERNEL"]),
          cpu=st.integers(0, 1))
    def alloc(self, gfp, cpu):
        order = 9 if "TRANSHUGE" in gfp else 0
        pfn = self.m.alloc_pages(gfp, order, cpu, owner=self.next)
        if pfn is not None:
            self.blocks[self.next] = (pfn, order)
            self.next += 1

    @precondition(lambda self: len(self.blocks) > len(self.pinned))
    @rule(data=st.data())
    def free(self, data):
        token = data.draw(st.sampled_from(sorted(set(self.blocks) - self.pinned)))
        pfn, order = self.blocks.pop(token)
        self.m.free_pages(pfn, order, 0)

    @precondition(lambda self: len(self.blocks) > len(self.pinned))
    @rule(data=st.data())
    def pin_longterm(self, data):
        tokens = data.draw(st.lists(st.sampled_from(sorted(set(self.blocks) - self.pinned)), min_size=1,
                                    max_size=4, unique=True))
        pages = [self.blocks[t][0] for t in tokens]
        res = self.migrate.pin_user_pages(self.m, pages)
        # The pages the range maps now: those migrated before a target ran out stay
        # migrated, pinned or not (PinResult.pages).
        for t, new in zip(tokens, res.pages):
            self.blocks[t] = (new, self.blocks[t][1])
        if res.status != "enomem":
            self.pinned.update(tokens)

    @precondition(lambda self: self.pinned)
    @rule(data=st.data())
    def unpin(self, data):
        token = data.draw(st.sampled_from(sorted(self.pinned)))
        self.migrate.unpin_user_pages(self.m, [self.blocks[token][0]])
        self.pinned.discard(token)

    @rule(count=st.sampled_from([1, 8, 512]))
    def cma_alloc(self, count):
        res = self.migrate.cma_alloc(self.m, count)
        self._moved(res.moved)
        if res.pfn is not None:
            self.ranges.append((res.pfn, count, res.owner))

    @precondition(lambda self: self.ranges)
    @rule()
    def cma_release(self):
        pfn, count, _ = self.ranges.pop()
        self.migrate.cma_release(self.m, pfn, count)

    @invariant()
    def tokens_where_they_belong(self):
        expected = {t: [b] for t, b in self.blocks.items()}
        for pfn, count, owner in self.ranges:
            expected[owner] = self.migrate.aligned_blocks(pfn, pfn + count)
        self.migrate.check_tokens(self.m, expected)

    def teardown(self):
        for pfn, count, _ in self.ranges:
            self.migrate.cma_release(self.m, pfn, count)
        for token in self.pinned:
            self.migrate.unpin_user_pages(self.m, [self.blocks[token][0]])
        for pfn, order in self.blocks.values():
            self.m.free_pages(pfn, order, 0)
        self.m.drain_all_pages()
        self.m.check()
        assert self.m.buddyinfo() == pcpemu.Machine(self.m.config).buddyinfo()


TestPinning = PinningModel.TestCase
