"""Fuzz every public entry point with valid and invalid calls interleaved (issue 13).

After each refused call: the specific exception, and buddyinfo, zoneinfo,
pagetypeinfo, stats(per_cpu=True) and the slot table unchanged, check() clean.
After each accepted call: check() clean.

Bounded for CI (30 examples of 40 steps per run, about 6 s of CPU);
``PCPEMU_FUZZ=long`` runs the long profile: 2000 examples of 200 steps (16 min on
the loaded 2-core build host, no failure).
"""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pcpemu import KernelConfig, Machine
from pcpemu.errors import (BadCpuError, BadOrderError, BadOwnerError, BadPfnError, BadSlotError, ConfigError,
                           NotAllocatedError, OpStreamError, UnknownGfpError, UnknownMigratetypeError,
                           UnknownZoneError, WrongOrderError)
from pcpemu.kernel.gfp import MIGRATETYPE_NAMES
from pcpemu.machine import CORE_CONSTANTS, OP_ALLOC, OP_DECAY, OP_DRAIN, OP_DTYPE, OP_FREE, OP_GFP_ZONE_SHIFT

LONG = os.environ.get("PCPEMU_FUZZ") == "long"
EXAMPLES, STEPS = (2000, 200) if LONG else (30, 40)
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                             HealthCheck.data_too_large])

CONFIGS = [KernelConfig.preset("v6.10", memory="64M", cpus=2),
           KernelConfig.preset("v6.9", memory="64M", cpus=3, cma="16M"),
           KernelConfig.preset("android", memory="32M", cpus=2, cma="8M")]
GFPS = ["GFP_KERNEL", "GFP_USER", "GFP_HIGHUSER_MOVABLE", "GFP_ATOMIC", "GFP_TRANSHUGE_LIGHT | __GFP_COMP",
        "GFP_KERNEL | __GFP_RECLAIMABLE", "GFP_DMA32", "GFP_NOWAIT", 0xcc0, 0x140cca]
BAD_GFPS = [0x18, "GFP_KERNEL | __GFP_MOVABLE | __GFP_RECLAIMABLE", 1 << 24, 0xffffffff, -1, "NOPE", "", 2.5, None]
BAD_INTS = [-1, 1 << 70, 2.5, "1", None, True, np.float64(1.0)]


def _snapshot(m):
    return (m.buddyinfo(), m.zoneinfo(), m.pagetypeinfo(), m.stats(per_cpu=True), m.nr_slots,
            m.slot_pfn(0), m.slot_pfn(1))


class Session:
    """One machine, the blocks the fuzz holds, and a step that is a valid or an invalid call."""

    def __init__(self, data, config):
        self.data = data
        self.m = Machine(config, seed=1)
        self.held = []              # (pfn, order)
        self.slots = {}             # slot -> order of the live allocation an op stream made
        self.zones = [z.name for z in self.m.populated_zones]

    def draw(self, strategy):
        return self.data.draw(strategy)

    def cpu(self):
        return self.draw(st.integers(0, self.m.config.cpus - 1))

    # -- valid calls --

    def valid(self):
        m = self.m
        kind = self.draw(st.sampled_from(["alloc", "free", "drain", "drain_all", "decay", "run", "views"]))
        if kind == "alloc" or (kind == "free" and not self.held):
            order = self.draw(st.sampled_from([0, 0, 1, 3, 4, 9, 10]))
            pfn = m.alloc_pages(self.draw(st.sampled_from(GFPS)), order, self.cpu())
            if pfn is not None:
                self.held.append((pfn, order))
        elif kind == "free":
            pfn, order = self.held.pop(self.draw(st.integers(0, len(self.held) - 1)))
            m.free_pages(pfn, order, self.cpu())
        elif kind == "drain":
            m.drain_pages(self.cpu())
        elif kind == "drain_all":
            m.drain_all_pages(self.draw(st.sampled_from([None, *self.zones])), self.cpu())
        elif kind == "decay":
            m.decay_pcp_high(self.cpu())
        elif kind == "run":
            m.run(self._stream())
            # A slot whose allocation failed holds nothing: a later stream may not free it.
            self.slots = {s: o for s, o in self.slots.items() if m.slot_pfn(s) is not None}
        else:
            zone = self.draw(st.sampled_from(self.zones))
            m.zone_state(zone), m.pcp_state(zone, self.cpu())
            m.pcp_list(zone, self.cpu(), self.draw(st.integers(0, m.nr_pcp_lists - 1)))
            m.free_list(zone, self.draw(st.integers(0, 10)), self.draw(st.sampled_from(MIGRATETYPE_NAMES)))
            m.order_to_pindex(self.draw(st.sampled_from(MIGRATETYPE_NAMES)), self.draw(st.integers(0, 10)))
            m.page_info(self.draw(st.integers(0, m.config.memory - 1)))
            m.slot_pfn(self.draw(st.integers(0, 1 << 40)))

    def _stream(self):
        # A valid stream: allocs into free slots, frees of live ones, drains.
        n = self.draw(st.integers(0, 12))
        ops = np.zeros(n, OP_DTYPE)
        for i in range(n):
            live = [s for s in self.slots]
            op = self.draw(st.sampled_from([OP_ALLOC, OP_ALLOC, OP_FREE, OP_DRAIN, OP_DECAY]))
            if op == OP_FREE and not live:
                op = OP_ALLOC
            ops[i]["op"], ops[i]["cpu"] = op, self.cpu()
            if op == OP_ALLOC:
                slot = self.draw(st.integers(0, 3000).filter(lambda s: s not in self.slots))
                order = self.draw(st.sampled_from([0, 2, 9]))
                gfp = self.draw(st.sampled_from([g for g in GFPS if isinstance(g, int)] + [0x0, 0x100cca]))
                ops[i]["slot"], ops[i]["order"], ops[i]["gfp"] = slot, order, gfp
                self.slots[slot] = order
            elif op == OP_FREE:
                slot = self.draw(st.sampled_from(live))
                ops[i]["slot"], ops[i]["order"] = slot, self.slots.pop(slot)
            else:
                ops[i]["slot"] = self.draw(st.integers(-(1 << 62), 1 << 62))   # not read
        return ops

    # -- invalid calls: (the call, the exception it must raise) --

    def invalid(self):
        m, cpus = self.m, self.m.config.cpus
        bad_cpu = self.draw(st.sampled_from([cpus, cpus + 7, *BAD_INTS]))
        bad_order = self.draw(st.sampled_from([11, 64, *BAD_INTS]))
        zone = self.draw(st.sampled_from(self.zones))
        cases = [
            (lambda: m.alloc_pages(self.draw(st.sampled_from(BAD_GFPS)), 0, 0), UnknownGfpError),
            (lambda: m.alloc_pages("GFP_KERNEL", bad_order, 0), BadOrderError),
            (lambda: m.alloc_pages("GFP_KERNEL", 0, bad_cpu), BadCpuError),
            (lambda: m.alloc_pages("GFP_KERNEL", 0, 0, owner=self.draw(st.sampled_from([0, -5, 1 << 64, 1.5,
                                                                                      "x"]))), BadOwnerError),
            (lambda: m.free_pages(self.draw(st.sampled_from([m.config.memory, -1, 1 << 60, 2.5, None])), 0, 0),
             BadPfnError),
            (lambda: m.free_pages(0, bad_order, 0), BadOrderError),
            (lambda: m.drain_pages(bad_cpu), BadCpuError),
            (lambda: m.decay_pcp_high(bad_cpu), BadCpuError),
            (lambda: m.drain_all_pages(self.draw(st.sampled_from(["Movable", "Foo", "Device", 3])), 0),
             UnknownZoneError),
            (lambda: m.zone_state(self.draw(st.sampled_from(["Movable", "HighMem", "", None]))), UnknownZoneError),
            (lambda: m.pcp_state(zone, bad_cpu), BadCpuError),
            (lambda: m.pcp_list(zone, 0, self.draw(st.sampled_from([-1, m.nr_pcp_lists, 2.5, "a"]))),
             UnknownMigratetypeError),
            (lambda: m.free_list(zone, 0, self.draw(st.sampled_from(["Foo", "movable", 1, None]))),
             UnknownMigratetypeError),
            (lambda: m.order_to_pindex(self.draw(st.sampled_from(["Foo", 0])), 0), UnknownMigratetypeError),
            (lambda: m.order_to_pindex("Movable", bad_order), BadOrderError),
            (lambda: m.page_info(self.draw(st.sampled_from([-1, m.config.memory, "x"]))), BadPfnError),
            (lambda: m.slot_pfn(self.draw(st.sampled_from([-1, "x", 1.5, None]))), BadSlotError),
            (lambda: m.run(self._bad_stream()), OpStreamError),
            (lambda: KernelConfig(**self._bad_config()), ConfigError),
        ]
        if self.held:
            pfn, order = self.held[self.draw(st.integers(0, len(self.held) - 1))]
            cases.append((lambda: m.free_pages(pfn, (order + 1) % 11, 0), WrongOrderError))
            if order:
                cases.append((lambda: m.free_pages(pfn + 1, order, 0), NotAllocatedError))
        return cases[self.draw(st.integers(0, len(cases) - 1))]

    def _bad_stream(self):
        ops = self._stream_copy()
        i = self.draw(st.integers(0, len(ops) - 1))
        fault = self.draw(st.sampled_from(["op", "cpu", "order", "gfp", "slot", "busy", "empty", "2d", "dtype"]))
        if fault == "2d":
            return np.stack([ops, ops])
        if fault == "dtype":
            return ops.astype([("op", "u1"), ("order", "u1"), ("cpu", "<u2"), ("gfp", "<u4"), ("slot", "<i4")])
        if fault == "op":
            ops[i]["op"] = self.draw(st.integers(CORE_CONSTANTS["NR_OPS"], 255))   # past the last op code
        elif fault == "cpu":
            ops[i]["cpu"] = self.m.config.cpus + self.draw(st.integers(0, 100))
        elif fault == "order":
            ops[i]["order"] = self.draw(st.integers(11, 255))
        elif fault == "gfp":
            ops[i]["op"], ops[i]["gfp"] = OP_ALLOC, self.draw(st.sampled_from([0x18, 0x1000000, 0xffffffff]))
        elif fault == "slot":
            ops[i]["op"], ops[i]["slot"] = OP_ALLOC, self.draw(st.sampled_from([-1, 1 << 26, 1 << 40, 1 << 62]))
        elif fault == "busy":
            ops = np.concatenate([ops, np.array([(OP_ALLOC, 0, 0, 0xcc0, 4000)] * 2, OP_DTYPE)])
        else:
            ops = np.concatenate([ops, np.array([(OP_FREE, 0, 0, 0, 4001)], OP_DTYPE)])
        return ops

    def _stream_copy(self):
        # A valid-looking prefix that must not run when a later op is bad.
        ops = np.zeros(3, OP_DTYPE)
        ops["op"], ops["gfp"], ops["slot"] = OP_ALLOC, 0xcc0, [4002, 4003, 4004]
        return ops

    def _bad_config(self):
        field, value = self.draw(st.sampled_from([
            ("memory", "1X"), ("memory", 10), ("memory", 1 << 40), ("cpus", 0), ("cpus", 5000), ("cpus", 2.0),
            ("zones", {"Normal": 1 << 29}), ("zones", {"HighMem": 100}), ("zones", {}), ("zones", "arm"),
            ("cma", "3M"), ("cma", "16G"), ("thp_lists", "double"), ("cacheline", 96),
            ("percpu_pagelist_high_fraction", 3), ("mthp_orders", {2: "split"}), ("thp", 1)]))
        kw = {field: value}
        if field == "zones" and isinstance(value, dict) and value.get("Normal"):
            kw["memory"] = "64M"
        return kw


@FUZZ
@given(data=st.data(), config=st.sampled_from(CONFIGS))
def test_fuzz_valid_and_invalid_calls(data, config):
    s = Session(data, config)
    for _ in range(STEPS):
        if data.draw(st.booleans()):
            s.valid()
        else:
            call, error = s.invalid()
            before = _snapshot(s.m)
            with pytest.raises(error):
                call()
            assert _snapshot(s.m) == before
        s.m.check()


_GFP_MACHINE = Machine(KernelConfig.preset("v6.10", memory="32M", cpus=1), seed=1)


@settings(max_examples=200 if not LONG else 20000, deadline=None)
@given(gfp=st.one_of(st.integers(0, (1 << 32) - 1), st.integers(0, 0xffffff), st.sampled_from([0x18, 1 << 24])))
def test_op_streams_and_alloc_pages_accept_the_same_gfps(gfp):
    # One rule for both paths (issue 13, item 1): an op stream refuses exactly
    # the gfps alloc_pages refuses, but for an OP_ALLOC's traced zone (a replay's
    # OP_GFP_ZONE, zone + 1, at most MAX_NR_ZONES) above the gfp bits.
    m = _GFP_MACHINE
    zone = gfp >> OP_GFP_ZONE_SHIFT & 7
    try:
        pfn = m.alloc_pages(gfp & ~(7 << OP_GFP_ZONE_SHIFT), 0, 0)
        api = True
    except UnknownGfpError:
        api = False
    else:
        if pfn is not None:
            m.free_pages(pfn, 0, 0)
    try:
        m.run(np.array([(OP_ALLOC, 0, 0, gfp, 0), (OP_FREE, 0, 0, 0, 0)], OP_DTYPE))
        stream = True
    except OpStreamError as e:
        assert isinstance(e, UnknownGfpError)
        stream = False
    assert (api and zone <= CORE_CONSTANTS["MAX_NR_ZONES"]) == stream
    m.check()

