"""The core's kmem tracepoints (Machine.tracing): where they fire, with which fields."""

import io

import numpy as np
import pytest

import pcpemu
from pcpemu import _core
from pcpemu.kernel import ftrace
from pcpemu.runs import workloads as wl
from pcpemu.kernel.ftrace import (MM_PAGE_ALLOC, MM_PAGE_ALLOC_EXTFRAG, MM_PAGE_ALLOC_ZONE_LOCKED, MM_PAGE_FREE,
                           MM_PAGE_PCPU_DRAIN, PFN_FAILED)

KERNEL = pcpemu.parse_gfp("GFP_KERNEL")


def machine(**kw):
    kw.setdefault("memory", "64M")
    kw.setdefault("zones", "normal")
    kw.setdefault("cpus", 2)
    return pcpemu.Machine(pcpemu.KernelConfig.preset("v6.10", **kw), seed=0)


def kinds(trace, kind):
    return trace.events[trace.events["kind"] == kind]


def test_a_refill_fires_zone_locked_for_each_block_then_the_alloc():
    m = machine()
    m.alloc_pages(KERNEL, 0)                 # the first allocation claims a block for Unmovable
    before = m.stats()
    with m.tracing() as t:
        pfn = m.alloc_pages(KERNEL, 0, cpu=1)
    refill = m.stats()["PCP_REFILL_PAGES"] - before["PCP_REFILL_PAGES"]
    locked = kinds(t, MM_PAGE_ALLOC_ZONE_LOCKED)
    assert refill > 1 and len(locked) == refill and len(t.events) == refill + 1
    assert (locked["percpu_refill"] == 1).all() and (locked["migratetype"] == 0).all()
    assert (locked["cpu"] == 1).all() and (locked["order"] == 0).all()
    # The pcp list hands out the first block the refill put on it.
    assert locked["pfn"][0] == pfn
    last = t.events[-1]
    assert (last["kind"], last["pfn"], last["order"], last["gfp"], last["migratetype"], last["cpu"]) == \
        (MM_PAGE_ALLOC, pfn, 0, KERNEL, 0, 1)
    assert (t.op == -1).all()


def test_frees_fire_before_the_drain_they_cause():
    m = machine()
    pfns = [m.alloc_pages(KERNEL, 0) for _ in range(4000)]
    before = m.stats()
    with m.tracing() as t:
        for pfn in pfns:
            m.free_pages(pfn, 0)
    after = m.stats()
    frees, drains = kinds(t, MM_PAGE_FREE), kinds(t, MM_PAGE_PCPU_DRAIN)
    assert sorted(frees["pfn"].tolist()) == sorted(pfns)
    drained = after["PCP_DRAIN_PAGES"] - before["PCP_DRAIN_PAGES"]
    assert drained > 0 and int((1 << drains["order"].astype(np.int64)).sum()) == drained
    # mm_page_free fires in free_pages_prepare, so a drain follows the free that caused it.
    assert t.events["kind"][0] == MM_PAGE_FREE
    first_drain = int(np.flatnonzero(t.events["kind"] == MM_PAGE_PCPU_DRAIN)[0])
    assert t.events["kind"][first_drain - 1] == MM_PAGE_FREE
    # The drain prints the pageblock's type, read as the block goes back.
    assert all(pcpemu.kernel.gfp.MIGRATETYPE_NAMES[d["migratetype"]] == m.pageblock_migratetype(int(d["pfn"]))
               for d in drains)
    m.check()


def test_buddy_path_refill_flag_follows_the_kernel():
    m2 = machine()
    m2.alloc_pages(KERNEL, 0)
    m2.set_pcp_locked("Normal", 0, True)      # the trylock fails: order 0 goes to rmqueue_buddy
    with m2.tracing() as t2:
        m2.alloc_pages(KERNEL, 0)
    m2.set_pcp_locked("Normal", 0, False)
    locked2 = kinds(t2, MM_PAGE_ALLOC_ZONE_LOCKED)
    # percpu_refill = pcp_allowed_order(order) && mt < MIGRATE_PCPTYPES, even off the pcp path.
    assert len(locked2) == 1 and locked2["percpu_refill"][0] == 1
    assert m2.stats()["zone_lock"]["rmqueue_buddy"] == 1


def test_order4_from_an_unmovable_block_fires_zone_locked_without_refill():
    # Order 4 has no pcp list in v6.10: rmqueue_buddy takes it, percpu_refill=0.
    m = machine()
    m.alloc_pages(KERNEL, 0)                 # makes an Unmovable block with free order-4 pieces
    with m.tracing() as t:
        pfn = m.alloc_pages(KERNEL, 4)
    (locked,) = kinds(t, MM_PAGE_ALLOC_ZONE_LOCKED)
    assert (locked["pfn"], locked["order"], locked["migratetype"], locked["percpu_refill"]) == (pfn, 4, 0, 0)


def test_a_failed_allocation_fires_with_no_page():
    m = machine(zones="x86_64", memory="64M")
    with m.tracing() as t:
        while m.alloc_pages("GFP_DMA", 10) is not None:
            pass
    last = t.events[-1]
    assert last["kind"] == MM_PAGE_ALLOC and last["pfn"] == PFN_FAILED and last["order"] == 10
    out = io.StringIO()
    ftrace.write_ftrace(t.events[-1:], out, header=False)
    assert "page=0000000000000000 pfn=0x0 order=10" in out.getvalue()


def test_extfrag_reports_whether_the_block_changed_owner():
    m = machine()
    with m.tracing() as t:
        m.alloc_pages(KERNEL, 4)             # claims a whole order-10 block for Unmovable
    (frag,) = kinds(t, MM_PAGE_ALLOC_EXTFRAG)
    assert (frag["order"], frag["fallback_order"], frag["migratetype"], frag["fallback_migratetype"],
            frag["change_ownership"]) == (4, 10, 0, 1, 1)
    # An order-10 block is claimed whole without __rmqueue_smallest: no zone_locked.
    assert len(kinds(t, MM_PAGE_ALLOC_ZONE_LOCKED)) == 0


def test_stream_events_name_their_ops():
    m = machine()
    ops = wl.mixed(4000, live=128, cpus=(0, 1), seed=3)
    with m.tracing() as t:
        r = m.run(ops)
    assert (np.diff(t.op) >= 0).all() and t.op.min() >= 0
    for kind, op in ((MM_PAGE_ALLOC, wl.OP_ALLOC), (MM_PAGE_FREE, wl.OP_FREE)):
        ev = kinds(t, kind)
        idx = t.op[t.events["kind"] == kind]
        expect = np.flatnonzero((ops["op"] == op) & ((r.results >= 0) | (op == wl.OP_ALLOC)))
        assert np.array_equal(idx, expect)
        assert np.array_equal(ev["pfn"], r.results[idx])
        assert np.array_equal(ev["cpu"], ops["cpu"][idx])
    s = r.stats
    assert len(kinds(t, MM_PAGE_ALLOC_EXTFRAG)) == s["PGALLOC_FALLBACK"]
    drains = kinds(t, MM_PAGE_PCPU_DRAIN)
    assert int((1 << drains["order"].astype(np.int64)).sum()) == s["PCP_DRAIN_PAGES"]
    # Written out and read back, the events are the same.
    out = io.StringIO()
    ftrace.write_ftrace(t.events, out)
    back = np.concatenate(list(ftrace.read_event_batches(io.BytesIO(out.getvalue().encode()), strict=True)))
    for name in ("kind", "cpu", "pfn", "order", "migratetype", "gfp", "percpu_refill", "fallback_order",
                 "fallback_migratetype", "change_ownership"):
        assert np.array_equal(back[name], t.events[name]), name


def test_tracing_is_off_outside_its_block_and_does_not_nest():
    m = machine()
    with m.tracing() as t:
        m.alloc_pages(KERNEL, 0)
        with pytest.raises(pcpemu.PcpemuError, match="do not nest"):
            with m.tracing():
                pass
    n = len(t.events)
    m.alloc_pages(KERNEL, 0)
    with m.tracing() as t2:
        pass
    assert n > 0 and len(t.events) == n and len(t2.events) == 0
    with m.tracing():
        with pytest.raises(pcpemu.PcpemuError, match="trace is on"):
            with m.threaded():
                pass
    with m.threaded():
        with pytest.raises(pcpemu.PcpemuError, match="single-threaded"):
            with m.tracing():
                pass
    m.check()


def test_the_core_events_become_ftrace_rows_field_by_field():
    # _core.trace_rows (the C copy Machine.tracing uses) against numpy's copy by name.
    m = machine(zones="x86_64")
    m._core.trace_start()
    m.run(wl.mixed(3000, live=200, cpus=(0, 1), seed=5))
    m.alloc_pages(KERNEL, 4, cpu=1)
    while m.alloc_pages("GFP_DMA", 10) is not None:
        pass
    raw = m._core.trace_stop()
    want = np.zeros(len(raw), ftrace.EVENT_DTYPE)
    for name in raw.dtype.names:
        if name != "op":
            want[name] = raw[name]
    want["line"] = -1
    for field in ("fallback_order", "percpu_refill", "change_ownership"):
        assert len(np.unique(want[field])) > 1, field        # the stream shows each field's values
    assert (want["pfn"] == PFN_FAILED).any() and len(np.unique(want["cpu"])) == 2
    got = _core.trace_rows(raw, ftrace.EVENT_DTYPE)
    assert got.dtype == ftrace.EVENT_DTYPE and got.tobytes() == want.tobytes()
    assert _core.trace_rows(raw[::3], ftrace.EVENT_DTYPE).tobytes() == want[::3].tobytes()
    assert len(_core.trace_rows(raw[:0], ftrace.EVENT_DTYPE)) == 0
    with pytest.raises(TypeError, match="CORE_EVENT_DTYPE"):
        _core.trace_rows(np.concatenate([raw]), ftrace.EVENT_DTYPE)     # numpy packs the dtype anew
    with pytest.raises(TypeError, match="does not match EVENT_DTYPE"):
        _core.trace_rows(raw, raw.dtype)
