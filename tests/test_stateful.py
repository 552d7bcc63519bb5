"""Random alloc/free/drain sequences against a reference model, check() after every step."""

import hypothesis.strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, initialize, invariant, precondition, rule

import pcpemu

CLASSES = ["GFP_KERNEL", "GFP_HIGHUSER_MOVABLE", "GFP_KERNEL | __GFP_RECLAIMABLE",
           "GFP_TRANSHUGE_LIGHT | __GFP_COMP", "GFP_KERNEL | __GFP_COMP", "GFP_DMA32", "GFP_ATOMIC"]


class AllocatorModel(RuleBasedStateMachine):
    allocated = Bundle("allocated")

    @initialize(preset=st.sampled_from(["v6.9", "v6.10", "v5.14", "android", "nothp"]),
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
        if res.status == "enomem":
            return
        for t, new in zip(tokens, res.pages):
            self.blocks[t] = (new, self.blocks[t][1])
            self.pinned.add(t)

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
