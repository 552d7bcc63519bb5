"""free_high where the traced kernel shows it (pcpemu.runs.freehigh, Machine.pcp_set_free_high_at)."""

import pathlib

import numpy as np
import pytest

from pcpemu import ConfigError, KernelConfig, Machine
from pcpemu.errors import UnknownZoneError
from pcpemu.kernel.ftrace import EVENT_DTYPE, MM_PAGE_FREE, MM_PAGE_FREE_BATCHED, MM_PAGE_PCPU_DRAIN
from pcpemu.kernel.zoneinfo import read_zoneinfo
from pcpemu.runs import replay as replay_mod
from pcpemu.runs.capture_replay import replay_capture
from pcpemu.runs.freehigh import FreeHighDrains

DATA = pathlib.Path(__file__).parent / "data"
MTHP = DATA / "capture-6.18-mthp32"


def _order2_blocks(m, n):
    blocks = [m.alloc_pages("GFP_KERNEL", order=2) for _ in range(n)]
    m.drain_all_pages()
    return blocks


def _first_drain(m, blocks):
    # Free the blocks one after another: the pcp state before the free that drained, and its index.
    drains = m.stats()["PCP_DRAIN"]
    for i, p in enumerate(blocks):
        before = m.pcp_state("Normal", 0)
        m.free_pages(p, order=2)
        if m.stats()["PCP_DRAIN"] != drains:
            return i, before
    return None, None


def test_a_set_free_high_threshold_drains_where_the_rule_would_not():
    # One CPU: high_min is far above what free_count (capped at batch << 5) reaches,
    # so v6.18's rule never drains early; at a set threshold of 400 the free that
    # reaches it drains the pcp at once (min(count, batch << 5) pages) and lowers high.
    m = Machine(KernelConfig(zones={"Normal": 262144}, cpus=1, kernel="v6.18"))
    rule = m.pcp_state("Normal", 0)["free_high_min_count"]
    assert rule == m.pcp_state("Normal", 0)["batch"] + m.pcp_state("Normal", 0)["high_min"] // 2 > 2016 + 3
    assert _first_drain(m, _order2_blocks(m, 300))[0] is None

    m = Machine(KernelConfig(zones={"Normal": 262144}, cpus=1, kernel="v6.18"))
    blocks = _order2_blocks(m, 300)
    assert m.pcp_set_free_high_at("Normal", 0, 400) == 0
    assert m.pcp_state("Normal", 0)["free_high_min_count"] == 400
    i, before = _first_drain(m, blocks)
    assert before["free_count"] >= 400 > before["free_count"] - 4 and i == 100
    after = m.pcp_state("Normal", 0)
    assert after["count"] == max(0, before["count"] + 4 - (before["batch"] << 5))
    assert m.pcp_set_free_high_at("Normal", 0, 0) == 400
    assert m.pcp_state("Normal", 0)["free_high_min_count"] == rule
    m.check()


@pytest.mark.parametrize("bad", [-1, 1 << 15, 2.5, True, "400"])
def test_pcp_set_free_high_at_refuses_what_free_count_cannot_hold(bad):
    m = Machine(KernelConfig(zones={"Normal": 262144}, cpus=1, kernel="v6.18"))
    m.pcp_set_free_high_at("Normal", 0, 500)
    with pytest.raises(ConfigError, match="free_count"):
        m.pcp_set_free_high_at("Normal", 0, bad)
    assert m.pcp_state("Normal", 0)["free_high_min_count"] == 500
    with pytest.raises(UnknownZoneError, match="Movable"):
        m.pcp_set_free_high_at("Movable", 0, 500)


# ---------------------------------------------------------------------------------------
# Finding the kernel's first free_high drain in its events.

ZONEINFO = read_zoneinfo(DATA / "zoneinfo-2cpu.txt")
NORMAL = next(z for z in ZONEINFO["zones"] if z["name"] == "Normal")
BASE = NORMAL["start_pfn"] + 4096


def _events(rows):
    ev = np.zeros(len(rows), EVENT_DTYPE)
    for i, (kind, pfn, order) in enumerate(rows):
        ev[i]["kind"], ev[i]["cpu"], ev[i]["pfn"], ev[i]["order"] = kind, 1, pfn, order
        ev[i]["timestamp"] = 1.0 + i * 1e-6
    return ev


def _drains(n, at):
    return [(MM_PAGE_PCPU_DRAIN, at + 4 * k, 2) for k in range(n)]


def _found(rows, left):
    fh = FreeHighDrains(ZONEINFO, 2)
    ev = _events(rows)
    return fh.find(ev, ev, lambda _ev, zone, cpu: left)


def test_a_run_of_free_high_drains_is_found_at_its_first_free():
    # free_unref_folios: three order-2 frees prepared, then committed; the second
    # and third commits each drain at once, the last leaving the pcp empty.
    a, b, c = BASE, BASE + 4, BASE + 8
    rows = [(MM_PAGE_FREE, a, 2), (MM_PAGE_FREE, b, 2), (MM_PAGE_FREE, c, 2),
            (MM_PAGE_FREE_BATCHED, a, 0), (MM_PAGE_FREE_BATCHED, b, 0)] + _drains(5, BASE + 64) + \
        [(MM_PAGE_FREE_BATCHED, c, 0)] + _drains(3, BASE + 128)
    assert _found(rows, 0) == [(1, 2, 1)]           # before b's free, Normal (zone 2 of the table), CPU 1
    # Single frees (free_frozen_pages) commit at once.
    rows = [(MM_PAGE_FREE, a, 2), (MM_PAGE_FREE, b, 2)] + _drains(5, BASE + 64) + [(MM_PAGE_FREE, c, 2)] + \
        _drains(3, BASE + 128)
    assert _found(rows, 0) == [(1, 2, 1)]


@pytest.mark.parametrize("case", ["over batch", "order 0", "no order 1..3 free before"])
def test_drains_that_free_high_does_not_explain_are_not_taken(case):
    a, b = BASE, BASE + 4
    rows = [(MM_PAGE_FREE, a, 2), (MM_PAGE_FREE, b, 2)] + _drains(5, BASE + 64)
    left = 0
    if case == "over batch":        # a drain over high leaves at least batch
        left = 63
    elif case == "order 0":
        rows[1] = (MM_PAGE_FREE, b, 0)
    else:
        rows[0] = (MM_PAGE_FREE, a, 0)
    assert _found(rows, left) == []


# ---------------------------------------------------------------------------------------
# On a real capture.


def test_an_mthp_capture_replays_its_free_high_drains(monkeypatch):
    # tests/data/capture-6.18-mthp32: 32 KiB mTHP faults and their frees on a 6.18
    # kernel whose Normal zone was still growing: its CPU 1 drained at once from a
    # free_count the rule (2,604) never reaches.
    def cpu1(r):
        return r.policies["split"]["comparison"]["per_cpu"][1]

    learned = replay_capture(MTHP)
    row, = learned.untraced["free_high"]
    assert (row["zone"], row["cpu"], row["set"]["split"]) == ("Normal", 1, True)
    assert row["free_count"]["split"] < row["rule"]["split"] == 2604
    for fig in ("drain_calls", "drained_pages", "refill_calls", "refill_blocks"):
        assert cpu1(learned)[fig]["ratio"] == pytest.approx(1, abs=0.01), fig
    monkeypatch.setattr(replay_mod.FreeHighDrains, "find", lambda self, *a: [])
    ruled = replay_capture(MTHP)
    assert ruled.untraced["free_high"] == []
    assert cpu1(ruled)["drain_calls"]["ratio"] < 0.2


def test_the_report_says_where_the_free_high_threshold_was_set():
    from pcpemu.runs.capture_replay import fidelity_on_capture
    from pcpemu.tools.reportrender import _fidelity, _fidelity_free_high
    fid = fidelity_on_capture(MTHP, pin_pages=0)
    text = " ".join(b[1] for b in _fidelity({"fidelity": fid}) if b[0] == "p")
    row, = fid["untraced"]["free_high"]
    assert f"Normal CPU 1: {row['free_count']['split']:,} against the rule's 2,604." in text
    unset = dict(row, set={"split": False})
    (kind, said), = _fidelity_free_high([unset], "split")
    assert "(not set: below batch, or the rule drained there already)" in said
    assert _fidelity_free_high([unset], "single") == [] and _fidelity_free_high([], "split") == []
