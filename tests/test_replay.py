import io
import pathlib

import numpy as np
import pytest

import pcpemu
from pcpemu.kernel.ftrace import (MM_PAGE_ALLOC, MM_PAGE_ALLOC_ZONE_LOCKED, MM_PAGE_FREE, MM_PAGE_PCPU_DRAIN,
                            read_event_batches)
from pcpemu.machine import Machine
from pcpemu.kernel.zoneinfo import static_differences
from pcpemu.runs.replay import replay
from pcpemu.runs.replaytext import replay_text

CAPTURE = pathlib.Path(__file__).parent / "data" / "kmem-6.18-small.txt.xz"
DATA = pathlib.Path(__file__).parent / "data"
SAMPLE_ZONES = {"DMA": 3840, "DMA32": 772918, "Normal": 163840}
needs_capture = pytest.mark.skipif(not CAPTURE.exists(), reason="real capture not present")


def line(cpu, ts, event, fields):
    return f"         python3-2906    [{cpu:03d}] .....  {ts:.6f}: {event}: {fields}\n"


def alloc(cpu, ts, pfn, order=0, gfp="GFP_KERNEL"):
    page = "0000000000000000" if pfn is None else "00000000deadbeef"
    return line(cpu, ts, "mm_page_alloc",
                f"page={page} pfn={pfn or 0:#x} order={order} migratetype=0 gfp_flags={gfp}")


def free(cpu, ts, pfn, order=0, event="mm_page_free"):
    return line(cpu, ts, event, f"page=00000000deadbeef pfn={pfn:#x} order={order}")


def tiny_config():
    # One Normal zone of 65536 pages: batch 15; a huge high fraction pins
    # high_min = high_max = batch << 2 = 60.
    return pcpemu.KernelConfig.preset("v6.10", zones={"Normal": 65536}, cpus=1,
                                      percpu_pagelist_high_fraction=100000)


def tiny_trace():
    pfns = [0x100000 + 7 * i for i in range(60)]
    text = [alloc(0, 1.0 + i * 1e-6, p) for i, p in enumerate(pfns)]
    text += [line(0, 1.0001, "mm_page_alloc_zone_locked",
                  f"page=00000000deadbeef pfn={0x200000 + i:#x} order=0 migratetype=0 percpu_refill=1")
             for i in range(90)]
    text.append(alloc(0, 1.0002, None))                        # failed in the kernel
    text.append(free(0, 1.0003, 0x300000))                     # allocated before the trace
    for i, p in enumerate(pfns):
        text.append(free(0, 1.001 + i * 1e-6, p))
        text.append(free(0, 1.001 + i * 1e-6, p, event="mm_page_free_batched"))
    text += [line(0, 1.002, "mm_page_pcpu_drain", f"page=00000000deadbeef pfn={0x200000 + i:#x} "
                  "order=0 migratetype=0") for i in range(75)]
    return "".join(text).encode()


def test_tiny_trace_refills_and_drains_worked_by_hand():
    # 60 order-0 allocations on an empty pcp (batch 15, high 60), nr_pcp_alloc():
    #   1st miss: 15 << alloc_factor 0 = 15 pages, alloc_factor -> 1
    #   16th:     15 << 1 = 30 <= max(60 - 0 - 15, 15) = 45, alloc_factor -> 2
    #   46th:     15 << 2 = 60 > 45, so 45 pages; 15 of them used, 30 stay on the list.
    # 60 frees (free_count counts up from 0): count reaches high 60 at the 30th free,
    # nr_pcp_free = clamp(free_count 30, 15, 45) = 30; again at the 60th,
    # clamp(60, 15, 45) = 45. So 3 refills of 90 blocks, 2 drains of 75 pages.
    m = Machine(tiny_config(), seed=1)
    r = replay(io.BytesIO(tiny_trace()), {"split": m})
    m.check()
    cpu0 = r.policies["split"]["per_cpu"][0]
    assert cpu0["refills"] == 3
    assert cpu0["refill_blocks_by_order"] == {0: 90}
    assert cpu0["pcp_hit"] == {0: 57} and cpu0["pcp_miss"] == {0: 3}
    assert cpu0["drains"] == 2 and cpu0["drained_pages"] == 75
    assert cpu0["zone_lock"] == 5
    assert cpu0["traced"] == {"refill_blocks": 90, "refill_pages": 90, "drained_pages": 75, "fallbacks": 0}
    assert cpu0["ratio"] == {"refill_blocks": 1.0, "drained_pages": 1.0}
    assert m.pcp_state("Normal", 0)["count"] == 15
    assert r.replayed == {"alloc": 60, "free": 60}


def test_tiny_trace_skips_by_reason_and_never_double_frees():
    r = replay(io.BytesIO(tiny_trace()), {"split": tiny_config()})
    assert r.skipped == {"failed_alloc": 1, "free_batched": 60, "free_before_trace": 1,
                         "free_untraced_alloc": 0, "free_wrong_order": 0}
    st = r.policies["split"]["total"]
    assert st["free_skipped"] == 0 and st["alloc_failed"] == 0


def test_frees_across_batches_find_their_allocations():
    # batch=7 splits allocations and their frees over many op-stream chunks.
    whole = replay(io.BytesIO(tiny_trace()), {"split": tiny_config()})
    small = replay(io.BytesIO(tiny_trace()), {"split": tiny_config()}, batch=7)
    assert small.replayed == whole.replayed and small.skipped == whole.skipped
    assert small.policies == whole.policies


def test_pre_trace_free_reasons():
    text = "".join([
        free(0, 1.0, 0x5000),                     # never allocated in the trace
        alloc(0, 1.1, 0x6000, order=1),
        free(0, 1.2, 0x6000, order=0),            # order differs from the allocation
        free(0, 1.3, 0x6000, order=1),            # freed again: its reallocation is not traced
        alloc(0, 1.4, 0x7000),
        alloc(0, 1.5, 0x7000),                    # allocated again: the first free is missing
        free(0, 1.6, 0x7000),
    ])
    m = Machine(tiny_config(), seed=1)
    r = replay(io.BytesIO(text.encode()), {"split": m})
    assert r.skipped == {"failed_alloc": 0, "free_batched": 0, "free_before_trace": 1,
                         "free_untraced_alloc": 1, "free_wrong_order": 1}
    assert r.missing_frees == 1
    assert r.replayed == {"alloc": 3, "free": 1}
    m.check()
    assert m.stats()["PGFREE"] == 1


def test_event_on_a_cpu_the_machine_lacks_fails_before_the_batch_runs():
    m = Machine(tiny_config(), seed=1)
    with pytest.raises(pcpemu.TraceFormatError, match=r"line 2: mm_page_alloc on CPU 3.*1 CPUs"):
        replay(io.BytesIO((alloc(0, 1.0, 0x10) + alloc(3, 1.1, 0x20)).encode()), {"split": m})
    assert m.stats()["ALLOC_CALLS"] == 0


def test_unreadable_trace_and_used_machine_are_refused(tmp_path):
    with pytest.raises(pcpemu.TraceFormatError, match="cannot read trace"):
        replay(tmp_path / "missing.txt", {"split": tiny_config()})
    m = Machine(tiny_config(), seed=1)
    m.alloc_pages("GFP_KERNEL")
    with pytest.raises(pcpemu.ConfigError, match="has run before"):
        replay(io.BytesIO(tiny_trace()), {"split": m})


def test_from_zoneinfo_reads_cpus_zones_and_min_watermarks():
    cfg = pcpemu.KernelConfig.from_zoneinfo(DATA / "zoneinfo-2cpu.txt", "v6.9")
    assert cfg.cpus == 2 and cfg.thp_lists == "single"
    assert {name: z["managed"] for name, z in cfg.zones.items()} == SAMPLE_ZONES
    mins = {z.name: z.watermark[0] for z in Machine(cfg).populated_zones}
    assert mins == {"DMA": 33, "DMA32": 6650, "Normal": 1409}
    # The example dump's Normal batch (63) is not what 163840 managed pages give (31).
    notes = static_differences(cfg, DATA / "zoneinfo-2cpu.txt")
    assert "zone Normal: pcp batch 31, the dump has 63" in notes


def test_from_zoneinfo_round_trips_pcpemu_zoneinfo():
    cfg = pcpemu.KernelConfig.preset("v6.10", zones=SAMPLE_ZONES, cpus=2)
    text = Machine(cfg).zoneinfo()
    again = pcpemu.KernelConfig.from_zoneinfo(text, "v6.10")
    assert static_differences(again, text) == []
    assert Machine(again).zoneinfo() == text


@pytest.fixture(scope="module")
def capture_replay():
    cfg = pcpemu.KernelConfig.preset("v6.10", zones=SAMPLE_ZONES, cpus=2)
    machines = {p: Machine(cfg.replace(thp_lists=p), seed=1) for p in ("single", "split")}
    out = io.StringIO()
    result = replay(CAPTURE, machines, emit_trace=out)
    return result, machines, out.getvalue()


@needs_capture
def test_real_capture_replays_and_checks(capture_replay):
    r, machines, _ = capture_replay
    for m in machines.values():
        m.check()
    assert r.events_read == 169348
    assert r.events["mm_page_alloc"] == 39168
    assert r.replayed == {"alloc": 39168, "free": 38412}
    assert r.skipped["free_batched"] == 37665 and r.skipped["free_before_trace"] == 86
    assert r.missing_frees == 387
    traced = r.traced
    assert [t["refill_blocks"] for t in traced] == [126, 35557]
    assert traced[1]["refill_blocks_by_order"] == {0: 35531, 9: 26}
    assert [t["drained_pages"] for t in traced] == [0, 18323 + 10 * 512]
    assert sum(t["fallbacks"] for t in traced) == 1
    for pol in r.policies.values():
        total = pol["total"]
        assert total["alloc_failed"] == 0 and total["free_skipped"] == 0
        assert total["refill_blocks"] == sum(total["refill_blocks_by_order"].values()) > 0
        assert total["traced"]["refill_blocks"] == 35683
    text = replay_text(r)
    assert "policy single" in text and "policy split" in text
    assert "mm_page_free_batched, a second record" in text


@needs_capture
def test_emitted_trace_reads_back_as_the_replayed_stream(capture_replay):
    r, machines, emitted = capture_replay
    back = np.concatenate(list(read_event_batches(io.BytesIO(emitted.encode()), strict=True)))
    allocs = back[back["kind"] == MM_PAGE_ALLOC]
    assert len(allocs) == 39168 and (back["kind"] == MM_PAGE_FREE).sum() == 38412
    orig = np.concatenate(list(read_event_batches(CAPTURE)))
    orig = orig[orig["kind"] == MM_PAGE_ALLOC]
    for field in ("cpu", "order", "gfp", "timestamp"):
        assert np.array_equal(allocs[field], orig[field])
    # The emulated pfns are the first machine's.
    assert allocs["pfn"].max() < machines["single"].config.memory
    # The emulator's own refill, drain and fallback tracepoints are in the file,
    # and read as a trace they count exactly what the emulator counted.
    assert {MM_PAGE_ALLOC_ZONE_LOCKED, MM_PAGE_PCPU_DRAIN} <= set(np.unique(back["kind"]).tolist())
    cfg = machines["single"].config
    again = replay(io.BytesIO(emitted.encode()), {"single": cfg}, seed=1)
    emulated = r.policies["single"]["per_cpu"]
    for cpu, traced in enumerate(again.traced):
        assert traced["drained_pages"] == emulated[cpu]["drained_pages"]
        assert traced["fallbacks"] == emulated[cpu]["fallbacks"]
        # As in the kernel, a block a fallback takes without claiming its
        # pageblock fires no mm_page_alloc_zone_locked, so a few refill blocks
        # go untraced; each came from a fallback.
        untraced = emulated[cpu]["refill_blocks"] - traced["refill_blocks"]
        assert 0 <= untraced <= traced["fallbacks"], cpu
    # Replaying the emulated stream gives the same emulated counters again.
    assert again.skipped["free_before_trace"] == 0 and again.missing_frees == 0
    for key in ("refill_blocks_by_order", "drained_pages", "zone_lock", "pcp_hit", "pcp_miss"):
        assert again.policies["single"]["total"][key] == r.policies["single"]["total"][key]
