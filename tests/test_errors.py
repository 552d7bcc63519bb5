"""Bad input is a specific PcpemuError with the machine unchanged (issue 13: items 1, 4, 7, 8, 9, 11)."""

import os
import subprocess
import sys

import numpy as np
import pytest

import pcpemu
from pcpemu import KernelConfig, Machine
from pcpemu.errors import (BadCpuError, BadOwnerError, BadSlotError, ConfigError, OpStreamError, PcpemuError,
                           StreamGfpError, TraceFormatError, UnknownGfpError, UnknownMigratetypeError,
                           UnknownZoneError)
from pcpemu.kernel.procfs import read_zoneinfo
from pcpemu.machine import OP_ALLOC, OP_ALLOC_BULK, OP_DRAIN, OP_DTYPE, OP_FREE

from conftest import small

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _state(m):
    return (m.buddyinfo(), m.zoneinfo(), m.pagetypeinfo(), m.stats(per_cpu=True), m.nr_slots)


def _ops(n, **fields):
    ops = np.zeros(n, OP_DTYPE)
    for k, v in fields.items():
        ops[k] = v
    return ops


# ---- item 1: __GFP_MOVABLE | __GFP_RECLAIMABLE ----

MOVABLE_RECLAIMABLE = ["GFP_KERNEL | __GFP_MOVABLE | __GFP_RECLAIMABLE", "__GFP_MOVABLE|__GFP_RECLAIMABLE", 0x18,
                       0xcd8]


@pytest.mark.parametrize("gfp", MOVABLE_RECLAIMABLE)
def test_alloc_pages_refuses_movable_with_reclaimable(machine, gfp):
    before = _state(machine)
    with pytest.raises(UnknownGfpError, match="__GFP_MOVABLE and __GFP_RECLAIMABLE"):
        machine.alloc_pages(gfp, 0, 0)
    assert _state(machine) == before
    machine.check()


@pytest.mark.parametrize("gfp", [0x18, 0xcd8, 0xffffffff, 1 << 24, 0x1000018])
def test_op_streams_refuse_what_alloc_pages_refuses(machine, gfp):
    # Same rule as alloc_pages: a stream with such an op is refused before any op runs.
    with pytest.raises(UnknownGfpError):
        machine.alloc_pages(gfp, 0, 0)
    ops = _ops(3, op=[OP_ALLOC, OP_ALLOC, OP_ALLOC], slot=[0, 1, 2], gfp=[0xcc0, gfp, 0xcc0])
    before = _state(machine)
    with pytest.raises(StreamGfpError, match=r"op 1 \(alloc .*gfp 0x") as e:
        machine.run(ops)
    assert isinstance(e.value, OpStreamError) and isinstance(e.value, UnknownGfpError)
    assert _state(machine) == before


def test_the_gfp_of_a_free_or_drain_is_not_read(machine):
    ops = _ops(3, op=[OP_ALLOC, OP_FREE, OP_DRAIN], slot=[0, 0, 0], gfp=[0xcc0, 0x18, 0xffffffff])
    machine.run(ops)
    machine.check()


def _assert_survives(code: str) -> None:
    # Run code in a child, so a segfault fails this test instead of killing pytest.
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=ROOT))
    assert (run.returncode, run.stdout) == (0, "ok\n"), run.stderr


def test_movable_with_reclaimable_in_a_crashing_subprocess_is_an_error():
    # Before the fix the process died with SIGSEGV (exit 139) on each of these.
    code = ("import numpy as np, pcpemu\nfrom pcpemu.machine import OP_DTYPE\n"
            "m = pcpemu.Machine(pcpemu.KernelConfig(memory='64M', cpus=2))\n"
            "for f in (lambda: m.alloc_pages(0x18, 0, 0), lambda: m.run(np.array([(0, 0, 0, 0xffffffff, 0)], "
            "OP_DTYPE))):\n"
            "    try:\n        f()\n    except pcpemu.UnknownGfpError:\n        pass\n"
            "m.check()\nprint('ok')\n")
    _assert_survives(code)


# ---- item 4: a failed boot does not crash at garbage collection ----

def test_a_core_whose_boot_failed_is_freed_safely():
    # nr_cpus = -1 (the 5th argument of the core's boot) makes the CPU table's
    # allocation fail after the zone table's: __dealloc__ then read an
    # uninitialised zone table (SIGSEGV at garbage collection).
    code = ("import gc, pcpemu, pcpemu.machine as pm\n"
            "real = pm._core.Allocator\n"
            "pm._core.Allocator = lambda *a: real(*a[:4], -1, *a[5:])\n"
            "for _ in range(20):\n"
            "    try:\n        pcpemu.Machine(pcpemu.KernelConfig(memory='16M', cpus=1))\n"
            "    except MemoryError:\n        pass\n    gc.collect()\nprint('ok')\n")
    _assert_survives(code)


# ---- item 7: 1-D op arrays only ----

@pytest.mark.parametrize("shape, order", [((1, 8), "C"), ((4, 2), "C"), ((2, 2, 2), "C"), ((4, 2), "F"),
                                          ((8, 1), "F")])
def test_op_arrays_must_be_one_dimensional(machine, shape, order):
    ops = np.zeros(shape, OP_DTYPE, order=order)
    ops["op"] = OP_ALLOC
    ops["gfp"] = 0xcc0
    ops["slot"] = np.arange(ops.size).reshape(shape)
    before = _state(machine)
    with pytest.raises(OpStreamError, match=rf"{len(shape)}-D array of shape"):
        machine.run(ops)
    assert _state(machine) == before


def test_a_strided_one_dimensional_array_runs_every_op(machine):
    ops = _ops(8, op=OP_ALLOC, gfp=0xcc0, slot=np.arange(8))[::2]
    assert (machine.run(ops).results >= 0).sum() == 4


# ---- item 8: slots are checked before anything is allocated ----

@pytest.mark.parametrize("slot", [2**26, 2**28, 2**31, 2**33, 2**62, -1])
def test_out_of_bound_slots_are_refused_before_the_table_grows(machine, slot):
    ops = _ops(2, op=[OP_ALLOC, OP_FREE], gfp=0xcc0, slot=[0, slot])
    before = _state(machine)
    with pytest.raises(OpStreamError, match=r"op 1 .*slot out of range"):
        machine.run(ops)
    assert _state(machine) == before and machine.nr_slots == 1024


def test_a_refused_stream_does_not_grow_the_slot_table(machine):
    ops = _ops(2, op=[OP_ALLOC, OP_FREE], gfp=0xcc0, slot=[100_000, 7])     # op 1 frees an empty slot
    with pytest.raises(OpStreamError, match="free of a slot that holds no allocation"):
        machine.run(ops)
    assert machine.nr_slots == 1024


def test_ops_that_use_no_slot_ignore_it(machine):
    ops = _ops(3, op=[OP_DRAIN, OP_DRAIN + 1, OP_DRAIN + 2], slot=[2**62, -5, 2**40])
    machine.run(ops)
    assert machine.nr_slots == 1024


def test_an_untraced_bulk_allocation_grows_the_slot_table(machine):
    # OP_ALLOC_BULK fills its slot like OP_ALLOC: a slot past the table grows it.
    ops = _ops(1, op=OP_ALLOC_BULK, gfp=0xcc0, slot=5000)
    pfn = machine.run(ops).results[0]
    assert pfn >= 0 and machine.slot_pfn(5000) == pfn and machine.nr_slots > 5000


def test_max_slots_bounds_the_table_and_can_be_raised(machine):
    ops = _ops(1, op=OP_ALLOC, gfp=0xcc0, slot=5000)
    machine.max_slots = 5000
    with pytest.raises(OpStreamError, match="max_slots=5000"):
        machine.run(ops)
    machine.max_slots = 5001
    pfn = machine.run(ops).results[0]
    assert pfn >= 0 and machine.slot_pfn(5000) == pfn and machine.nr_slots == 5001


# ---- item 9: zone mappings ----

@pytest.mark.parametrize("kw, message", [
    ({"zones": {"Normal": 2**29}}, r"zones\[Normal\] \(pages\): 536870912 is outside"),
    ({"zones": {"Normal": 10**23}}, r"zones\[Normal\] \(pages\)"),
    ({"zones": {"DMA": 2**27, "Normal": 2**28}}, "memory .pages. of the zones"),
    ({"memory": "64M", "zones": {"Normal": 10**6}}, "memory: 16384 pages, but the zones"),
    ({"memory": "2G", "zones": {"Normal": "1G"}}, "memory: 524288 pages, but the zones"),
    ({"zones": {"Normal": 0}}, "outside the allowed range 1"),
    ({"zones": {"Normal": "1X"}}, "cannot read size"),
])
def test_zone_mappings_have_the_limits_of_memory(kw, message):
    with pytest.raises(ConfigError, match=message):
        KernelConfig(**kw)


def test_a_memory_that_agrees_with_the_zones_is_accepted():
    a = KernelConfig(zones={"DMA": 4096, "Normal": "64M"})
    assert a.memory == 4096 + 16384 == KernelConfig(memory=a.memory, zones=a.zones).memory
    assert a.replace(cpus=2).memory == a.memory
    assert KernelConfig().memory == 8 << 18


# ---- item 11: each bad argument its own class, one line ----

@pytest.mark.parametrize("call, cls", [
    (lambda m: m.order_to_pindex("Foo", 0), UnknownMigratetypeError),
    (lambda m: m.free_list("DMA32", 0, "Foo"), UnknownMigratetypeError),
    (lambda m: m.pcp_list("DMA32", 0, "a"), UnknownMigratetypeError),
    (lambda m: m.pcp_list("DMA32", 0, 2.5), UnknownMigratetypeError),
    (lambda m: m.slot_pfn("x"), BadSlotError),
    (lambda m: m.slot_pfn(1.5), BadSlotError),
    (lambda m: m.slot_pfn(-1), BadSlotError),
    (lambda m: m.alloc_pages("GFP_KERNEL", 0, 7), BadCpuError),
    (lambda m: m.drain_pages(-1), BadCpuError),
    (lambda m: m.alloc_pages("GFP_KERNEL", 0, 0, owner=0), BadOwnerError),
    (lambda m: m.alloc_pages("GFP_KERNEL", 0, 0, owner=1 << 64), BadOwnerError),
    (lambda m: m.zone_state("Movable"), UnknownZoneError),
    (lambda m: m.zone_state("Nope"), UnknownZoneError),
    (lambda m: m.drain_all_pages("Normal"), UnknownZoneError),
    (lambda m: Machine("v6.10"), ConfigError),
    (lambda m: Machine(None), ConfigError),
])
def test_views_and_arguments_raise_their_own_class(machine, call, cls):
    before = _state(machine)
    with pytest.raises(cls) as e:
        call(machine)
    assert type(e.value) is cls and "\n" not in str(e.value)
    assert _state(machine) == before


@pytest.mark.parametrize("arg, message", [
    ("", "neither zoneinfo text nor a file name"),
    ("/no/such/zoneinfo", "cannot read: No such file or directory"),
    ("Node 0, zone   Normal\n  pages free 5\x00\n", "line 2: a NUL byte"),
    ("zone\x00info", "neither zoneinfo text nor a file name"),
])
def test_read_zoneinfo_errors_are_trace_format_errors(arg, message):
    with pytest.raises(TraceFormatError, match=message):
        read_zoneinfo(arg)


def test_read_zoneinfo_of_a_binary_file(tmp_path):
    path = tmp_path / "zoneinfo.bin"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(TraceFormatError, match="not a text file"):
        read_zoneinfo(str(path))


def test_every_error_class_is_exported():
    for name in pcpemu.errors.__all__:
        assert issubclass(getattr(pcpemu, name), PcpemuError)


def test_slots_filled_by_an_earlier_run_are_checked_in_the_next(machine):
    # validate_ops reads what a slot holds from the page of its block, on the stream's
    # first use of the slot: a later stream must still see each slot's state and order.
    machine.run(_ops(2, op=OP_ALLOC, gfp=0xcc0, order=[0, 2], slot=[3, 9]))
    before = _state(machine)
    for ops, why in [(_ops(1, op=OP_ALLOC, gfp=0xcc0, slot=9), "alloc into a slot that holds a live allocation"),
                     (_ops(1, op=OP_FREE, order=0, slot=9), "free order differs from the order the slot was"),
                     (_ops(1, op=OP_FREE, order=0, slot=4), "free of a slot that holds no allocation"),
                     (_ops(3, op=[OP_FREE, OP_ALLOC, OP_FREE], gfp=0xcc0, order=[0, 1, 2], slot=[3, 3, 3]),
                      "free order differs from the order the slot was")]:
        with pytest.raises(OpStreamError, match=why):
            machine.run(ops)
        assert _state(machine) == before
    machine.run(_ops(2, op=OP_FREE, order=[0, 2], slot=[3, 9]))
    assert machine.slot_pfn(3) is None and machine.slot_pfn(9) is None
