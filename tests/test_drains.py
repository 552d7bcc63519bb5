"""Drains the traced kernel ran on purpose (pcpemu.runs.drains): drain_all_pages,
found from each drained page's pcp owner, and compaction's drain_local_pages, found
between compact_zone's begin and end; both replayed where the kernel ran them."""

import io
import json
import pathlib
import shutil

import numpy as np

import pcpemu
from pcpemu.kernel.ftrace import (COMPACTION_BEGIN, COMPACTION_END, EVENT_DTYPE, MM_PAGE_ALLOC, MM_PAGE_FREE,
                                  MM_PAGE_PCPU_DRAIN, TraceEvent, write_ftrace)
from pcpemu.runs.drains import find_explicit_drains
from pcpemu.runs.capture_replay import replay_capture
from pcpemu.runs.replay import _Matcher, replay
from pcpemu.runs.replaytext import replay_text


def _batch(rows):
    ev = np.zeros(len(rows), EVENT_DTYPE)
    for i, (kind, cpu, pfn) in enumerate(rows):
        ev[i] = (kind, cpu, pfn, 0, 1 if kind != MM_PAGE_FREE else -1, 0, i * 1e-6, i + 1, -1, -1, -1, -1, 0)
    return ev


def test_a_drain_of_another_cpus_pages_is_a_drain_all_pages_run():
    ev = _batch([
        (MM_PAGE_FREE, 1, 0x1000),          # 0: on CPU 1's list
        (MM_PAGE_FREE, 1, 0x1001),          # 1
        (MM_PAGE_FREE, 0, 0x2000),          # 2: on CPU 0's list
        (MM_PAGE_PCPU_DRAIN, 0, 0x2000),    # 3: CPU 0 drains its own page,
        (MM_PAGE_PCPU_DRAIN, 0, 0x1000),    # 4: then CPU 1's,
        (MM_PAGE_PCPU_DRAIN, 0, 0x3000),    # 5: one on a list since before the trace,
        (MM_PAGE_PCPU_DRAIN, 0, 0x1001),    # 6: and CPU 1's again: one run
        (MM_PAGE_FREE, 0, 0x4000),          # 7: ends it
        (MM_PAGE_FREE, 0, 0x4001),          # 8
        (MM_PAGE_PCPU_DRAIN, 0, 0x4000),    # 9: a drain of CPU 0's own pages only
    ])
    *_, owner = _Matcher().ops(ev)
    assert owner.tolist() == [-1, -1, -1, 0, 1, -1, 1, -1, -1, 0]
    found = find_explicit_drains(ev, owner, (["DMA32", "Normal"], np.array([0x1000, 0x3000])))
    assert [tuple(r) for r in found.runs] == [(3, 0, None, True)]     # pages of two zones
    assert found.by_owner["cpu"].tolist() == [1, 1, 0, 0, 1, 1, 1, 0, 0, 0]
    assert (found.by_owner[["kind", "pfn"]] == ev[["kind", "pfn"]]).all()
    assert found.hidden["kind"].tolist() == [MM_PAGE_FREE] * 3 + [0] * 4 + [MM_PAGE_FREE] * 2 + [MM_PAGE_PCPU_DRAIN]
    assert find_explicit_drains(ev[7:], owner[7:]) is None            # local drains only
    one_zone = find_explicit_drains(ev, owner, (["DMA32", "Normal"], np.array([0x1000, 0x10000])))
    assert [tuple(r) for r in one_zone.runs] == [(3, 0, "DMA32", True)]


def test_a_few_pages_of_another_cpu_in_a_cpus_own_drain_do_not_make_a_drain_all_pages():
    # A page whose free the trace shows on CPU 1 can sit on CPU 0's list (the task
    # moved between free_pages_prepare and the pcp commit): one such page in a run of
    # CPU 0's own drains is not drain_all_pages; as many as CPU 0's own, or a batch, are.
    def run(foreign, own):
        rows = [(MM_PAGE_FREE, 1, 0x1000 + i) for i in range(foreign)]
        rows += [(MM_PAGE_FREE, 0, 0x2000 + i) for i in range(own)]
        rows += [(MM_PAGE_PCPU_DRAIN, 0, 0x2000 + i) for i in range(own // 2)]
        rows += [(MM_PAGE_PCPU_DRAIN, 0, 0x1000 + i) for i in range(foreign)]
        rows += [(MM_PAGE_PCPU_DRAIN, 0, 0x2000 + i) for i in range(own // 2, own)]
        ev = _batch(rows)
        return find_explicit_drains(ev, _Matcher().ops(ev)[-1])
    assert run(1, 62) is None and run(28, 100) is None
    assert [r.every_cpu for r in run(30, 30).runs] == [True]
    assert [r.every_cpu for r in run(63, 500).runs] == [True]


def test_a_batched_free_puts_its_page_on_the_pcp_of_the_cpu_that_commits_it():
    # free_unref_folios traces mm_page_free in free_pages_prepare and commits each folio
    # (mm_page_free_batched) on the CPU it runs on then.
    from pcpemu.kernel.ftrace import MM_PAGE_FREE_BATCHED
    ev = _batch([(MM_PAGE_FREE, 0, 0x1000), (MM_PAGE_FREE_BATCHED, 1, 0x1000), (MM_PAGE_PCPU_DRAIN, 1, 0x1000)])
    assert _Matcher().ops(ev)[-1].tolist() == [-1, -1, 1]


def test_a_cpus_drain_inside_compact_zone_is_compactions_drain_local_pages():
    ev = _batch([
        (MM_PAGE_FREE, 0, 0x2000),          # 0
        (COMPACTION_BEGIN, 0, 0x1000),      # 1: compact_zone of the zone at 0x1000 on CPU 0
        (MM_PAGE_FREE, 0, 0x2001),          # 2: a migrated page freed
        (MM_PAGE_PCPU_DRAIN, 0, 0x2000),    # 3: lru_add_drain_cpu_zone
        (MM_PAGE_PCPU_DRAIN, 0, 0x2001),    # 4
        (MM_PAGE_FREE, 1, 0x3000),          # 5
        (MM_PAGE_PCPU_DRAIN, 1, 0x3000),    # 6: CPU 1 is not compacting
        (COMPACTION_END, 0, 0x1000),        # 7
        (MM_PAGE_FREE, 0, 0x2002),          # 8
        (MM_PAGE_PCPU_DRAIN, 0, 0x2002),    # 9: after the end: the pcp rules' own
        (COMPACTION_BEGIN, 1, 0x1000),      # 10: CPU 1 compacts into the next batch
    ])
    *_, owner = _Matcher().ops(ev)
    zones = (["Normal"], np.array([0x1000]))
    compacting = np.zeros(2, bool)
    found = find_explicit_drains(ev, owner, zones, compacting)
    assert [tuple(r) for r in found.runs] == [(3, 0, "Normal", False)]
    assert found.hidden["kind"][3:5].tolist() == [0, 0] and found.hidden["kind"][9] == MM_PAGE_PCPU_DRAIN
    assert compacting.tolist() == [False, True]
    nxt = _batch([(MM_PAGE_FREE, 1, 0x3001), (MM_PAGE_PCPU_DRAIN, 1, 0x3001)])
    *_, owner = _Matcher().ops(nxt)
    assert [tuple(r) for r in find_explicit_drains(nxt, owner, zones, compacting).runs] == [(1, 1, "Normal", False)]
    assert find_explicit_drains(ev, _Matcher().ops(ev)[-1], zones) is None     # no ends recorded: none taken


def test_a_run_inside_compact_zone_that_leaves_the_pcp_fuller_than_a_free_could_is_a_frees_drain():
    # compact_memory compacts at order -1 and drains nothing itself; the frees of the
    # pages it migrates set off the pcp rules' drains, at most 63 << 5 pages each, and
    # those leave the rest on the lists. drain_local_pages leaves none.
    ev = _batch([(COMPACTION_BEGIN, 0, 0x1000), (MM_PAGE_FREE, 0, 0x2001), (MM_PAGE_PCPU_DRAIN, 0, 0x2000),
                 (MM_PAGE_PCPU_DRAIN, 0, 0x2001), (MM_PAGE_FREE, 0, 0x2002)])
    *_, owner = _Matcher().ops(ev)
    zones = (["Normal"], np.array([0x1000]))
    seen = []

    def found(left):
        def pcp_count(prefix, zone, cpu):
            seen.append((len(prefix), zone, cpu))
            return left
        return find_explicit_drains(ev, owner, zones, np.zeros(1, bool), pcp_count)

    assert found(2017) is None and seen == [(4, "Normal", 0)]       # the count after the run's last drain
    for left in (None, 0, 2016, -300):      # not known; what the counts lose with no event
        assert [tuple(r) for r in found(left).runs] == [(2, 0, "Normal", False)]


def _trace(remote_drain):
    # CPU 1 allocates and frees 40 pages, which stay on its pcp list; then, in the
    # kernel's trace, CPU 0 drains them (drain_all_pages), or not.
    events = [TraceEvent(MM_PAGE_ALLOC, 1, 0x10000 + i, 0, 1, pcpemu.kernel.gfp.parse_gfp("GFP_HIGHUSER_MOVABLE"),
                         timestamp=1.0 + i * 1e-6) for i in range(40)]
    events += [TraceEvent(MM_PAGE_FREE, 1, 0x10000 + i, 0, timestamp=1.001 + i * 1e-6) for i in range(40)]
    if remote_drain:
        events += [TraceEvent(MM_PAGE_PCPU_DRAIN, 0, 0x10000 + i, 0, 1, timestamp=1.002) for i in range(40)]
    events.append(TraceEvent(MM_PAGE_ALLOC, 0, 0x20000, 0, 1, pcpemu.kernel.gfp.parse_gfp("GFP_HIGHUSER_MOVABLE"),
                             timestamp=1.003))
    out = io.StringIO()
    write_ftrace(events, out)
    return io.BytesIO(out.getvalue().encode())


def test_the_kernels_drain_all_pages_is_replayed_where_it_ran():
    cfg = pcpemu.KernelConfig.preset("v6.18", memory="8G", cpus=2)
    runs = {}
    for remote in (False, True):
        m = pcpemu.Machine(cfg)
        runs[remote] = (replay(_trace(remote), {"split": m}), m)
    (kept, m_kept), (drained, m_drained) = runs[False], runs[True]
    assert m_kept.pcp_state("Normal", 1)["count"] >= 40
    assert m_drained.pcp_state("Normal", 1)["count"] == 0
    assert drained.replayed["drain_all"] == 1 and "drain_all" not in kept.replayed
    cpu0 = drained.comparison()["per_cpu"][0]
    # Traced on the CPU that drained, as the kernel's are: at least CPU 1's 40 pages.
    assert cpu0["drained_pages"]["kernel"] == 40 and cpu0["drained_pages"]["emulated"] >= 40
    assert cpu0["drain_calls"] == {"kernel": 1, "emulated": 1, "ratio": 1.0}
    assert "1 drain_all_pages in the trace" in replay_text(drained)
    assert "note: the trace has" not in replay_text(drained)


def test_a_bare_trace_says_its_kswapd_and_compaction_events_are_replayed_from_a_capture():
    events = [TraceEvent(MM_PAGE_ALLOC, 0, 0x10000, 0, 1, pcpemu.kernel.gfp.parse_gfp("GFP_KERNEL"), timestamp=1.0),
              TraceEvent(COMPACTION_BEGIN, 0, 0x1000, -1, timestamp=1.1)]
    out = io.StringIO()
    write_ftrace(events, out)
    r = replay(io.BytesIO(out.getvalue().encode()), {"split": pcpemu.KernelConfig.preset("v6.18", memory="8G")})
    assert "note: the trace has mm_compaction_begin events; what they do to the pcp lists is replayed from a " \
           "capture directory" in replay_text(r)


def test_frees_of_allocations_that_failed_on_the_emulated_machine_are_skipped_in_later_batches():
    # The kernel allocated 4,000 order-3 blocks and freed them; the emulated zone holds
    # fewer. The frees come in later op-stream chunks than their failed allocations.
    gfp = pcpemu.kernel.gfp.parse_gfp("GFP_KERNEL")
    events = [TraceEvent(MM_PAGE_ALLOC, 0, 0x100000 + 8 * i, 3, 0, gfp, timestamp=1.0) for i in range(4000)]
    events += [TraceEvent(MM_PAGE_FREE, 0, 0x100000 + 8 * i, 3, timestamp=2.0) for i in range(4000)]
    out = io.StringIO()
    write_ftrace(events, out)
    m = pcpemu.Machine(pcpemu.KernelConfig.preset("v6.18", zones={"Normal": 16384}, cpus=1))

    def free_pages():
        return m.zone_state("Normal")["nr_free_pages"] + m.pcp_state("Normal", 0)["count"]
    before = free_pages()
    r = replay(io.BytesIO(out.getvalue().encode()), {"split": m}, batch=1000)
    total = r.policies["split"]["total"]
    assert 0 < total["alloc_failed"] == total["free_skipped"] < 4000
    assert free_pages() == before                # every block that was allocated came back
    m.check()
    assert f"warning: {total['alloc_failed']:,} allocations the kernel made failed" in replay_text(r)


PRESSURE = pathlib.Path(__file__).parent / "data" / "capture-6.18-pressure"


def _remote_drain_runs(trace):
    # Reference: runs of a CPU's drains (back to back on it) whose pages another CPU's
    # free (its commit, mm_page_free_batched, where there is one) or refill put on its
    # list are at least as many as the rest (its own, and those of no known owner), or
    # a batch (63), read line by line.
    import lzma
    import re
    pat = re.compile(r"\[(\d+)\] \S+ +[\d.]+: (mm_page_\w+): page=\S+ pfn=0x([0-9a-f]+) order=(\d+)(.*)$")
    owner, runs, pages = {}, 0, {}

    def close(cpu):
        nonlocal runs
        foreign, own = pages.pop(cpu, (0, 0))
        runs += foreign >= 63 or 0 < foreign >= own

    for line in lzma.open(trace, "rt"):
        m = pat.search(line)
        if m is None:
            continue
        cpu, name, pfn, order = int(m.group(1)), m.group(2), int(m.group(3), 16), int(m.group(4))
        if name != "mm_page_pcpu_drain":
            close(cpu)
        if name in ("mm_page_free", "mm_page_free_batched") or (name == "mm_page_alloc_zone_locked"
                                                                and "percpu_refill=1" in m.group(5)):
            owner[pfn] = cpu
        elif name == "mm_page_alloc":
            owner.pop(pfn, None)
        elif name == "mm_page_pcpu_drain":
            o = owner.pop(pfn, None)
            foreign, own = pages.get(cpu, (0, 0))
            remote = o is not None and o != cpu
            pages[cpu] = (foreign + remote * (1 << order), own + (not remote) * (1 << order))
    for cpu in list(pages):
        close(cpu)
    return runs


def test_a_real_pressure_capture_replays_what_the_kernel_did_to_the_pcp_lists(tmp_path):
    r = replay_capture(PRESSURE)
    assert r.replayed["drain_all"] == _remote_drain_runs(PRESSURE / "trace.txt.xz") > 0
    assert r.untraced["kswapd"]["replayed"] and r.untraced["kswapd"]["wakes"] > 0
    assert r.untraced["compaction"]["replayed"] and r.untraced["compaction"]["drains"] > 0
    assert r.untraced["kswapd"]["held"] + r.untraced["kswapd"]["balanced"] == r.untraced["kswapd"]["wakes"]
    # The same capture as if kswapd's wakes and compaction's ends were not recorded.
    off = tmp_path / "cap"
    shutil.copytree(PRESSURE, off)
    info = json.loads((off / "capture.json").read_text())
    info["events"] = [e for e in info["events"] if e not in ("vmscan/mm_vmscan_kswapd_wake",
                                                             "compaction/mm_compaction_end")]
    (off / "capture.json").write_text(json.dumps(info))
    r_off = replay_capture(off)
    assert not r_off.untraced["kswapd"]["replayed"] and not r_off.untraced["compaction"]["replayed"]
    on_total, off_total = r.comparison()["total"], r_off.comparison()["total"]
    for f in ("refill_blocks", "refill_calls", "drained_pages", "drain_calls"):
        assert abs(np.log(on_total[f]["ratio"])) < abs(np.log(off_total[f]["ratio"])), f
        assert abs(np.log(on_total[f]["ratio"])) < np.log(1.05), f      # within 5% (0.99-1.03 measured)
    assert r.config["reclaim"] == "traced"
    # Each allocation came from the zone the kernel took it from (OP_GFP_ZONE), so the
    # emulated DMA32, which the kernel fell back to under pressure, ends as the
    # kernel's did (361,267 free pages against 25,395 without).
    dma32 = next(z for z in r.end_free["split"] if z["zone"] == "DMA32")
    assert abs(dma32["emulated"] / dma32["kernel"] - 1) < 0.05, dma32
    assert "split free pages at the end: DMA " in replay_text(r)
