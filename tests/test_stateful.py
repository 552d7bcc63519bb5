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

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def double_free_is_refused(self, data):
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
