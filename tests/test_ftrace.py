"""Tests of pcpemu.kernel.ftrace (the kmem trace reader and writer) and of
pcpemu.kernel.procfs.read_zoneinfo on the capture machine's zoneinfo."""

import doctest
import gzip
import io
import lzma
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from pcpemu import _ftrace
from pcpemu.kernel import ftrace
from pcpemu.errors import TraceFormatError
from pcpemu.kernel.ftrace import (
    EVENT_DTYPE,
    MM_PAGE_ALLOC,
    MM_PAGE_ALLOC_EXTFRAG,
    MM_PAGE_ALLOC_ZONE_LOCKED,
    MM_PAGE_FREE,
    MM_PAGE_FREE_BATCHED,
    MM_PAGE_PCPU_DRAIN,
    PFN_FAILED,
    TraceEvent,
    TraceStats,
    for_each_event,
    read_event_batches,
    write_ftrace,
)
from pcpemu.kernel.procfs import read_zoneinfo
from pcpemu.kernel.gfp import gfp_migratetype, parse_gfp, show_gfp_flags

CAPTURE = Path(__file__).parent / "data" / "kmem-6.18-small.txt.xz"
DATA = Path(__file__).parent / "data"
needs_capture = pytest.mark.skipif(not CAPTURE.exists(), reason="real capture not present")


def read_all(source, **kw):
    batches = list(read_event_batches(source, **kw))
    return np.concatenate(batches) if batches else np.zeros(0, EVENT_DTYPE)


def events_of(text, **kw):
    return list(for_each_event(io.BytesIO(text.encode()), **kw))


@pytest.fixture(scope="module")
def capture():
    stats = TraceStats()
    return read_all(CAPTURE, stats=stats), stats


@pytest.fixture(scope="module")
def capture_text():
    return lzma.decompress(CAPTURE.read_bytes())


# ---------------------------------------------------------------------------------------
# The real capture (Linux 6.18, 2 CPUs).


@needs_capture
def test_capture_counts(capture):
    rows, stats = capture
    assert stats.events == {
        "mm_page_alloc": 39168,
        "mm_page_free": 38498,
        "mm_page_free_batched": 37665,
        "mm_page_alloc_zone_locked": 35683,
        "mm_page_pcpu_drain": 18333,
        "mm_page_alloc_extfrag": 1,
    }
    assert len(rows) == sum(stats.events.values()) == 169348  # header says 169348/169348
    assert np.bincount(rows["kind"]).tolist() == [0, 39168, 38498, 37665, 18333, 35683, 1]
    assert stats.lines == 169360
    assert stats.skipped == {"comment": 12}
    assert not stats.malformed and not stats.examples
    assert stats.lost_events == 0 and stats.failed_allocs == 0


@needs_capture
def test_capture_fields(capture):
    rows, _ = capture
    assert rows["line"][0] == 13 and rows["line"][-1] == 169360
    assert (np.diff(rows["line"]) == 1).all()
    assert np.bincount(rows["cpu"]).tolist() == [5189, 164159]
    assert (rows["pfn"] > 0).all() and (rows["pfn"] < 0x180000).all()
    assert (np.diff(rows["timestamp"]) >= 0).all()  # `trace` merges the CPUs by time
    assert rows["timestamp"][0] == 1459.279645 and rows["timestamp"][-1] == 1459.607329
    order = rows["order"]
    assert set(np.unique(order).tolist()) == {0, 3, 9}
    for kind, n9 in ((MM_PAGE_ALLOC, 32), (MM_PAGE_FREE, 32), (MM_PAGE_ALLOC_ZONE_LOCKED, 26),
                     (MM_PAGE_PCPU_DRAIN, 10), (MM_PAGE_FREE_BATCHED, 0)):
        assert np.count_nonzero((rows["kind"] == kind) & (order == 9)) == n9
    assert ((rows["pfn"] % (1 << order.astype(np.int64))) == 0).all()  # blocks are aligned
    alloc = rows[rows["kind"] == MM_PAGE_ALLOC]
    assert (alloc["gfp"] != 0).all()
    assert all(gfp_migratetype(int(g)) == mt for g, mt in zip(alloc["gfp"], alloc["migratetype"]))
    thp = alloc[alloc["order"] == 9]
    assert set(thp["gfp"].tolist()) == {parse_gfp("GFP_TRANSHUGE|__GFP_NORETRY|__GFP_THISNODE")}
    zl = rows[rows["kind"] == MM_PAGE_ALLOC_ZONE_LOCKED]
    assert set(zl["percpu_refill"].tolist()) <= {0, 1}
    other = rows[rows["kind"] != MM_PAGE_ALLOC_ZONE_LOCKED]
    assert (other["percpu_refill"] == -1).all()
    free = rows[(rows["kind"] == MM_PAGE_FREE) | (rows["kind"] == MM_PAGE_FREE_BATCHED)]
    assert (free["migratetype"] == -1).all() and (free["gfp"] == 0).all()


@needs_capture
def test_capture_alloc_free_pairing(capture):
    rows, _ = capture
    kind, pfn = rows["kind"], rows["pfn"]
    # free_unref_folios() traces mm_page_free_batched after free_pages_prepare() traced
    # mm_page_free for the same folio.
    assert set(pfn[kind == MM_PAGE_FREE_BATCHED]) <= set(pfn[kind == MM_PAGE_FREE])
    # The capture follows one process tree, so blocks freed by other tasks are unseen;
    # but a free of a block with an outstanding traced allocation has its order.
    live: dict[int, int] = {}
    matched = unmatched = 0
    for k, p, o in zip(kind.tolist(), pfn.tolist(), rows["order"].tolist()):
        if k == MM_PAGE_ALLOC:
            live[p] = o
        elif k == MM_PAGE_FREE:
            if p in live:
                assert live.pop(p) == o, (p, o)
                matched += 1
            else:
                unmatched += 1
    assert (matched, unmatched) == (38412, 86)
    # Every order-9 block freed by this process was allocated by it at order 9.
    thp_alloc = set(pfn[(kind == MM_PAGE_ALLOC) & (rows["order"] == 9)])
    thp_free = set(pfn[(kind == MM_PAGE_FREE) & (rows["order"] == 9)])
    assert thp_free == thp_alloc


@needs_capture
def test_capture_extfrag(capture):
    rows, _ = capture
    (ev,) = rows[rows["kind"] == MM_PAGE_ALLOC_EXTFRAG].tolist()
    assert TraceEvent(*ev)._replace(line=0, timestamp=0.0) == TraceEvent(
        MM_PAGE_ALLOC_EXTFRAG, cpu=1, pfn=0x160C00, order=0, migratetype=0,
        fallback_order=10, fallback_migratetype=1, change_ownership=1)


@needs_capture
def test_fast_path_agrees_with_slow_path(capture, capture_text):
    # Every line of the capture read one line at a time must give the same rows.
    rows, _ = capture
    stats, cache, slow = TraceStats(), {}, []
    for lineno, line in enumerate(capture_text.split(b"\n")[:-1], 1):
        row = ftrace._slow_line(line, lineno, stats, True, cache)
        if row is not None:
            slow.append(row)
    assert (np.array(slow, EVENT_DTYPE) == rows).all()


@needs_capture
def test_sources_agree(tmp_path, monkeypatch, capture, capture_text):
    rows, _ = capture
    plain = tmp_path / "trace.txt"
    plain.write_bytes(capture_text)
    gz = tmp_path / "trace"  # no suffix: found by magic bytes
    gz.write_bytes(gzip.compress(capture_text, compresslevel=1))
    cut = capture_text.index(b"\n", len(capture_text) // 2) + 1
    two = tmp_path / "two.xz"  # two .xz streams one after the other, read as one text
    two.write_bytes(lzma.compress(capture_text[:cut]) + lzma.compress(capture_text[cut:]))
    assert (read_all(plain) == rows).all()
    assert (read_all(gz) == rows).all()
    assert (read_all(two) == rows).all()
    with open(CAPTURE, "rb") as f:
        assert (read_all(f) == rows).all()
    # A build without liblzma's headers decodes .xz with Python's lzma in a thread.
    monkeypatch.setattr(_ftrace, "XZ_RING", False)
    assert (read_all(CAPTURE) == rows).all() and (read_all(two) == rows).all()
    assert (read_all(io.StringIO(capture_text.decode())) == rows).all()


@needs_capture
@pytest.mark.skipif(shutil.which("xz") is None, reason="no xz binary to write a multi-block file")
def test_multi_block_xz_decodes_in_threads_and_its_damage_is_an_error(tmp_path, capture, capture_text):
    # pcpemu capture writes with xz -T0: many blocks, which the ring decodes a block
    # per thread (lzma_stream_decoder_mt); the rows must be the same, and a cut or
    # damaged multi-block file must still fail by name.
    rows, _ = capture
    packed = subprocess.run(["xz", "-1", "-T2", "--block-size=256KiB", "-c"], input=capture_text,
                            capture_output=True, check=True).stdout
    whole = tmp_path / "blocks.xz"
    whole.write_bytes(packed)
    assert (read_all(whole) == rows).all()
    cut = tmp_path / "cut.xz"
    cut.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(TraceFormatError, match="truncated compressed data"):
        read_all(cut)
    bad = tmp_path / "bad.xz"
    mid = len(packed) // 2
    bad.write_bytes(packed[:mid] + bytes(b ^ 0x5A for b in packed[mid:mid + 64]) + packed[mid + 64:])
    with pytest.raises(TraceFormatError, match="corrupt or unreadable compressed data"):
        read_all(bad)


def _task_nices():
    # {tid: nice} of this process's threads (field 19 of /proc/<pid>/task/<tid>/stat).
    out = {}
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/stat") as f:
            out[int(tid)] = int(f.read().rsplit(")", 1)[1].split()[16])
    return out


def _try_nice(refused):
    # Lower this thread's priority by one, or say why the system refused.
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + 1)
    except OSError as err:
        refused.append(err)


@needs_capture
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
def test_decompress_and_parse_threads_run_below_the_caller(tmp_path, capture_text):
    # Their consumer, the replay on the caller's thread, must not wait for a core while
    # they read ahead: every thread a read starts (liblzma's decoders too) runs at
    # the caller's nice + _HELPER_NICE.
    refused = []
    probe = threading.Thread(target=lambda: _try_nice(refused))
    probe.start()
    probe.join()
    if refused:
        pytest.skip(f"this system refuses a thread its own nice value: {refused[0]}")
    packed = tmp_path / "trace.xz"          # many blocks where xz can write them: liblzma starts decoders
    packed.write_bytes(lzma.compress(capture_text) if shutil.which("xz") is None else subprocess.run(
        ["xz", "-1", "-T2", "--block-size=256KiB", "-c"], input=capture_text, capture_output=True, check=True).stdout)
    own = os.getpriority(os.PRIO_PROCESS, 0)
    for source in (packed, tmp_path / "plain"):
        if source.name == "plain":
            source.write_bytes(capture_text)
        before = _task_nices()
        batches = read_event_batches(source, batch=1000)
        next(batches)
        started = {t: n for t, n in _task_nices().items() if t not in before}
        batches.close()
        assert started and set(started.values()) == {min(own + ftrace._HELPER_NICE, 19)}, started
    assert os.getpriority(os.PRIO_PROCESS, 0) == own


@needs_capture
def test_file_read_from_its_position_and_a_stopped_read_leaves_no_thread(tmp_path, capture, capture_text):
    rows, _ = capture
    plain = tmp_path / "trace.txt"
    plain.write_bytes(capture_text)
    with open(plain, "rb") as f:
        first = f.readline()                # the file object reads ahead of its position
        got = read_all(f)
    assert first.startswith(b"#")           # a comment: the same rows, each a line earlier
    assert (got["pfn"] == rows["pfn"]).all() and (got["line"] == rows["line"] - 1).all()
    for source in (plain, CAPTURE):
        batches = read_event_batches(source, batch=1000)
        next(batches)
        batches.close()
        assert not [t.name for t in threading.enumerate() if t.name.startswith("pcpemu-")]


@needs_capture
def test_batches(capture):
    rows, _ = capture
    sizes = [len(b) for b in read_event_batches(CAPTURE, batch=50000)]
    assert sizes == [50000, 50000, 50000, 19348]
    for b in read_event_batches(CAPTURE, batch=50000):
        assert b.dtype == EVENT_DTYPE
    with pytest.raises(ValueError):
        next(read_event_batches(CAPTURE, batch=0))


@needs_capture
def test_for_each_event_matches_batches(capture):
    rows, _ = capture
    events = list(for_each_event(CAPTURE))
    assert len(events) == len(rows)
    assert events[0] == TraceEvent(*rows[0].tolist())
    assert events[-1] == TraceEvent(*rows[-1].tolist())
    assert events[0].name == "mm_page_alloc" and not events[0].failed
    assert events[0].gfp == parse_gfp("GFP_HIGHUSER_MOVABLE|__GFP_ZERO|__GFP_COMP")


# ---------------------------------------------------------------------------------------
# The formats: trace with and without irq-info and tgid, trace-cmd report, perf script.

ALLOC_FIELDS = ("page=000000003b458358 pfn=0x16869f order=0 migratetype=1 "
                "gfp_flags=GFP_HIGHUSER_MOVABLE|__GFP_ZERO|__GFP_COMP")
EXPECT = TraceEvent(MM_PAGE_ALLOC, cpu=1, pfn=0x16869F, order=0, migratetype=1,
                    gfp=parse_gfp("GFP_HIGHUSER_MOVABLE|__GFP_ZERO|__GFP_COMP"),
                    timestamp=1459.279645, line=1)


@pytest.mark.parametrize("prefix", [
    "         python3-2906    [001] .....  1459.279645: mm_page_alloc: ",  # trace
    "         python3-2906    [001] d..3  1459.279645: mm_page_alloc: ",   # 4 flag columns
    "         python3-2906    [001]  1459.279645: mm_page_alloc: ",        # irq-info off
    "         python3-2906    (   2906) [001] .....  1459.279645: mm_page_alloc: ",  # tgid
    "         python3-2906    (-------) [001] .....  1459.279645: mm_page_alloc: ",
    "     Web Content-2906    [001] .N.1.  1459.279645: mm_page_alloc: ",  # spaces
    "  gnome-shell-x-2906    [001] ..s1.  1459.279645: mm_page_alloc: ",   # dashes
    "           <...>-2906    [001] .....  1459.279645: mm_page_alloc: ",
    "         python3-2906  [001]  1459.279645: mm_page_alloc:        ",   # trace-cmd
    "         python3-2906  [001] d..3.  1459.279645: mm_page_alloc:        ",
    "         python3  2906 [001]  1459.279645: kmem:mm_page_alloc: ",     # perf script
    "         python3  2906/2906 [001]  1459.279645: kmem:mm_page_alloc: ",
])
def test_prefix_formats(prefix):
    stats = TraceStats()
    assert events_of(prefix + ALLOC_FIELDS + "\n", stats=stats, strict=True) == [EXPECT]
    assert stats.events == {"mm_page_alloc": 1}


@pytest.mark.parametrize("prefix", [
    "         kswapd0-45      [001] .....  1459.279645: mm_page_alloc: ",  # trace (the fast path)
    "         kswapd1-46    (     46) [001] .....  1459.279645: mm_page_alloc: ",
    "         kswapd0-45  [001]  1459.279645: mm_page_alloc:        ",     # trace-cmd
    "         kswapd0    45 [001]  1459.279645: kmem:mm_page_alloc: ",     # perf script
])
def test_an_event_of_kswapds_task_is_marked(prefix):
    # The replay ends each balance_pgdat run at kswapd's last event (runs.reclaim).
    assert events_of(prefix + ALLOC_FIELDS + "\n", strict=True) == [EXPECT._replace(kswapd=1)]
    # Another task whose name has kswapd in it, not first, is not kswapd.
    other = prefix.replace("kswapd", "xkswapd", 1)
    assert events_of(other + ALLOC_FIELDS + "\n", strict=True) == [EXPECT]
    # The kswapd's own wake line (the slow path) and a write-back keep the mark.
    wake = prefix.split(": ")[0] + ": mm_vmscan_kswapd_wake: nid=0 order=9\n"
    ev = np.concatenate(list(read_event_batches(io.BytesIO((prefix + ALLOC_FIELDS + "\n" + wake).encode()))))
    assert ev["kswapd"].tolist() == [1, 1]
    out = io.StringIO()
    write_ftrace(ev, out, header=False)
    assert [e.kswapd for e in events_of(out.getvalue(), strict=True)] == [1, 1]


def test_field_variants():
    p = "  kworker/u8:2-77      [000] ..... 12345.000001: "
    text = "".join([
        p + "mm_page_alloc: page=0000000000000000 pfn=0x0 order=9 migratetype=1 "
            "gfp_flags=GFP_TRANSHUGE\n",
        p + "mm_page_alloc: page=(null) pfn=0 order=0 migratetype=0 gfp_flags=GFP_KERNEL\n",
        p + "mm_page_alloc: page=ffffea0005a1a7c0 pfn=1476255 order=0 migratetype=0 "
            "gfp_flags=0xcc0\n",                                                  # old %lu pfn
        p + "mm_page_alloc: page=00000000aabbccdd pfn=0x0 order=0 migratetype=0 "
            "gfp_flags=none\n",                                                   # pfn 0 is real
        p + "mm_page_free_batched: page=00000000aabbccdd pfn=0x10 order=0 cold=0\n",  # v4.14
        p + "mm_page_alloc_zone_locked: page=ffffea0005a1a7c0 pfn=1476255 order=0 "
            "migratetype=0 cpu=0 percpu_refill=1\n",                             # v4.15
        p + "mm_page_pcpu_drain: page=00000000aabbccdd pfn=0x200 order=9 migratetype=1\n",
    ])
    stats = TraceStats()
    evs = events_of(text, stats=stats, strict=True)
    assert [e.pfn for e in evs] == [PFN_FAILED, PFN_FAILED, 1476255, 0, 0x10, 1476255, 0x200]
    assert [e.failed for e in evs] == [True, True, False, False, False, False, False]
    assert evs[0].order == 9 and evs[2].gfp == 0xCC0 and evs[3].gfp == 0
    assert evs[5].percpu_refill == 1 and evs[6].migratetype == 1
    assert all(e.cpu == 0 and e.timestamp == 12345.000001 for e in evs)
    assert stats.failed_allocs == 2


def test_raw_counter_timestamps():
    text = ("  python3-2906    [001] ..... 4501238975318: mm_page_free: "
            "page=00000000aabbccdd pfn=0x10 order=0\n")
    (ev,) = events_of(text, strict=True)
    assert ev.timestamp == 4501238975318.0 and ev.pfn == 0x10


# ---------------------------------------------------------------------------------------
# Skipped lines and malformed lines.

P = "         python3-2906    [001] .....  1459.279645: "
SKIPPY = "".join([
    "# tracer: nop\n",
    "\n",
    "cpus=2\n",
    P + "sched_switch: prev_comm=python3 prev_pid=2906 prev_prio=120 prev_state=S ==> "
        "next_comm=swapper/1 next_pid=0 next_prio=120\n",
    P + "kmalloc: call_site=kmalloc_trace+0x26/0x90 ptr=000000002b0c1c4d bytes_req=64\n",
    "CPU:1 [LOST 42 EVENTS]\n",
    "##### CPU 1 buffer started ####\n",
    P + "mm_page_free: page=000000002c62056f pfn=0x15becb order=0\n",
    "         python3  2906 [001]  1459.279645: sched:sched_waking: comm=a pid=1\n",
])


def test_skipped_by_reason():
    stats = TraceStats()
    evs = events_of(SKIPPY, stats=stats, strict=True)
    assert [(e.pfn, e.line) for e in evs] == [(0x15BECB, 8)]
    assert stats.skipped == {"comment": 2, "blank": 1, "not an event line": 1,
                             "event sched_switch": 1, "event kmalloc": 1, "lost events": 1,
                             "event sched_waking": 1}
    assert stats.lost_events == 42 and stats.lines == 9 and not stats.malformed


BAD = [
    ("mm_page_alloc: page=000000003b458358 pfn=0xzz order=0 migratetype=1 gfp_flags=GFP_KERNEL",
     "bad number pfn=0xzz"),
    ("mm_page_alloc: page=000000003b458358 pfn=0x10 order=0 migratetype=1",
     "missing field gfp_flags="),
    ("mm_page_alloc: page=000000003b458358 pfn=0x10 order=0 migratetype=1 gfp_flags=GFP_BOGUS",
     "unknown gfp flag 'GFP_BOGUS'"),
    ("mm_page_free: page=000000003b458358 pfn=0x10 order=1x", "bad number order=1x"),
    ("mm_page_free: page=000000003b458358 pfn=0x10 order=99", "order=99 out of range"),
    ("mm_page_free: page=000000003b458358 pfn=0x10 order=0 bogus=1", "unexpected field bogus="),
    ("mm_page_free: page=0000000000000000 pfn=0x10 order=0", "NULL page with pfn=0x10"),
    ("mm_page_alloc_zone_locked: page=000000003b458358 pfn=0x10 order=0 migratetype=0 "
     "percpu_refill=2", "percpu_refill=2 out of range"),
    ("mm_page_pcpu_drain: page=000000003b458358 pfn=0x10 order=0 migratetype",
     "cannot read field"),
]


@pytest.mark.parametrize("fields, reason", BAD)
def test_malformed_line(fields, reason):
    good = P + "mm_page_free: page=000000002c62056f pfn=0x15becb order=0\n"
    text = good + P + fields + "\n" + good
    stats = TraceStats()
    evs = events_of(text, stats=stats)
    assert [e.line for e in evs] == [1, 3]  # the bad line is skipped, nothing else
    assert sum(stats.malformed.values()) == 1
    (lineno, why, line), = stats.examples
    assert lineno == 2 and reason in why and line == P + fields
    with pytest.raises(TraceFormatError, match=r"^line 2: .*" + re.escape(reason)):
        events_of(text, strict=True)


def test_malformed_prefix_and_examples_limit():
    bad = "garbage mm_page_free: page=000000002c62056f pfn=0x15becb order=0\n"
    stats = TraceStats(max_examples=3)
    assert events_of(bad * 5, stats=stats) == []
    assert stats.malformed == {"mm_page_free: cannot read the line prefix": 5}
    assert [e[0] for e in stats.examples] == [1, 2, 3]


def test_crlf_and_no_final_newline():
    text = (P + "mm_page_free: page=000000002c62056f pfn=0x15becb order=0\r\n"
            + P + "mm_page_free: page=000000002c62056f pfn=0x15becc order=0")
    assert [e.pfn for e in events_of(text, strict=True)] == [0x15BECB, 0x15BECC]


# ---------------------------------------------------------------------------------------
# The writer.


def test_write_kernel_format():
    out = io.StringIO()
    n = write_ftrace([EXPECT], out, comm="python3", pid=2906, header=False)
    line = out.getvalue()
    assert n == 1
    # Line 13 of the capture, but with show_gfp_flags()' v6.10 flag order (6.18 prints the
    # single flags in bit order: __GFP_ZERO|__GFP_COMP).
    real = ("         python3-2906    [001] .....  1459.279645: mm_page_alloc: "
            + ALLOC_FIELDS.replace("__GFP_ZERO|__GFP_COMP", "__GFP_COMP|__GFP_ZERO"))
    assert ALLOC_FIELDS.endswith(show_gfp_flags(EXPECT.gfp).replace("COMP|__GFP_ZERO",
                                                                     "ZERO|__GFP_COMP"))
    hashed = re.compile(r"page=00000000[0-9a-f]{8} ")
    assert hashed.search(line)
    assert hashed.sub("page=X ", line) == hashed.sub("page=X ", real) + "\n"


def test_write_failed_and_extfrag():
    evs = [TraceEvent(MM_PAGE_ALLOC, 0, PFN_FAILED, 9, 1, parse_gfp("GFP_TRANSHUGE"), 1.5),
           TraceEvent(MM_PAGE_ALLOC_EXTFRAG, 1, 0x160C00, 0, 0, 0, 2.25, 0, 10, 1)]
    out = io.StringIO()
    write_ftrace(evs, out, header=False)
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("page=0000000000000000 pfn=0x0 order=9 migratetype=1 "
                             "gfp_flags=GFP_TRANSHUGE")
    assert lines[1].endswith("pfn=0x160c00 alloc_order=0 fallback_order=10 pageblock_order=9 "
                             "alloc_migratetype=0 fallback_migratetype=1 fragmenting=0 "
                             "change_ownership=0")
    assert lines[0].startswith("          pcpemu-1       [000] .....     1.500000: ")
    # A known change_ownership prints as it is; unknown (-1) prints 0.
    out = io.StringIO()
    write_ftrace([evs[1]._replace(change_ownership=1)], out, header=False)
    assert out.getvalue().rstrip().endswith("fragmenting=0 change_ownership=1")
    with pytest.raises(ValueError, match="only mm_page_alloc can fail"):
        write_ftrace([TraceEvent(MM_PAGE_FREE, 0, PFN_FAILED, 0)], io.StringIO())


@needs_capture
def test_round_trip(tmp_path, capture):
    rows, _ = capture
    path = tmp_path / "out.txt"
    with open(path, "w") as f:
        assert write_ftrace(rows, f) == len(rows)
    stats = TraceStats()
    back = read_all(path, stats=stats, strict=True)
    assert stats.skipped == {"comment": 10}
    assert (back["line"] == np.arange(len(rows)) + 11).all()
    for name in EVENT_DTYPE.names:
        if name != "line":
            assert (back[name] == rows[name]).all(), name


def test_round_trip_records():
    evs = [EXPECT, EXPECT._replace(kind=MM_PAGE_FREE, migratetype=-1, gfp=0, cpu=3),
           TraceEvent(MM_PAGE_ALLOC_ZONE_LOCKED, 2, 0x200, 9, 1, 0, 7.0, 0, -1, -1, 0),
           TraceEvent(MM_PAGE_ALLOC, 0, PFN_FAILED, 0, 0, 0xCC0, 8.0)]
    out = io.StringIO()
    write_ftrace(evs, out)
    back = list(for_each_event(io.StringIO(out.getvalue()), strict=True))
    assert [e._replace(line=0) for e in back] == [e._replace(line=0) for e in evs]


# ---------------------------------------------------------------------------------------
# /proc/zoneinfo


def test_zoneinfo():
    info = read_zoneinfo(DATA / "zoneinfo-2cpu.txt")
    assert info["nr_cpus"] == 2
    zones = info["zones"]
    assert [z["name"] for z in zones] == ["DMA", "DMA32", "Normal", "Movable", "Device"]
    assert [z["populated"] for z in zones] == [True, True, True, False, False]
    dma, dma32, normal, movable, device = zones
    assert (dma["managed"], dma32["managed"], normal["managed"]) == (3840, 772918, 163840)
    assert (dma32["spanned"], dma32["present"], dma32["start_pfn"]) == (1044480, 782288, 4096)
    assert (normal["min"], normal["low"], normal["high"], normal["promo"]) == (1409, 1761, 2113,
                                                                                2465)
    assert dma["protection"] == (0, 2965, 3602, 3602, 3602)
    assert normal["pages_free"] == 150321 and normal["cma"] == 0
    assert normal["pagesets"] == [{"cpu": 0, "count": 1204, "high": 1437, "batch": 63},
                                  {"cpu": 1, "count": 5, "high": 1437, "batch": 63}]
    assert dma["pagesets"][1] == {"cpu": 1, "count": 0, "high": 0, "batch": 1}
    assert dma["stat_threshold"] == 8 and normal["node_unreclaimable"] == 0
    assert dma["node_stats"]["nr_active_anon"] == 23451 and "node_stats" not in dma32
    assert dma32["stats"]["nr_free_pages"] == 700123 and dma32["stats"]["numa_hit"] == 1234
    assert movable["managed"] == 0 and movable["pagesets"] == [] and "start_pfn" not in movable
    assert device["protection"] == (0, 0, 0, 0, 0)


def test_zoneinfo_text_and_high_min_max():
    text = (DATA / "zoneinfo-2cpu.txt").read_text()
    assert read_zoneinfo(text) == read_zoneinfo(os.fspath(DATA / "zoneinfo-2cpu.txt"))
    text = text.replace("              batch: 63\n",
                        "              batch: 63\n              high_min: 357\n"
                        "              high_max: 1437\n")
    normal = read_zoneinfo(text)["zones"][2]
    assert normal["pagesets"][0] == {"cpu": 0, "count": 1204, "high": 1437, "batch": 63,
                                     "high_min": 357, "high_max": 1437}


def test_zoneinfo_errors():
    with pytest.raises(TraceFormatError, match="line 1"):
        read_zoneinfo("  pages free 3\nNode 0, zone DMA\n")
    with pytest.raises(TraceFormatError, match="line 3: cannot read"):
        read_zoneinfo("Node 0, zone      DMA\n  pages free     3\n  what is this\n")


def test_doctests():
    assert doctest.testmod(ftrace, raise_on_error=True).attempted >= 1
