"""Every workload in one place: the registry, its descriptions, streams and warm-up."""

import numpy as np
import pytest

from pcpemu.errors import OpStreamError
from pcpemu.runs import workloads as wl

CAPTURE = "tests/data/kmem-6.18-small.txt.xz"


def test_every_workload_describes_itself():
    for name, w in wl.WORKLOADS.items():
        d = w.as_dict()
        assert d["name"] == name and d["source"] and d["frees"]
        assert sum(a["percent"] for a in d["allocates"]) == pytest.approx(100.0)
    # "mixed" is one mix: the churn generator and the contention workload share it.
    ops = wl.mixed(2000, live=64, seed=1)
    assert set(np.unique(ops["order"][ops["op"] == wl.OP_ALLOC])) <= {o for _, o, _ in wl.WORKLOADS["mixed"].classes}


@pytest.mark.parametrize("p", [0, 1, 5, 20, 40, 77])
def test_nonmovable_share_is_what_the_name_says(p):
    w = wl.get(f"thp-nm{p}")
    assert w.as_dict()["nonmovable_thp_percent"] == pytest.approx(p)
    assert w.share(9, movable=True) == pytest.approx((80 - p) / 100)


def test_unknown_workloads_are_refused():
    for bad in ("web", "thp-nm81", "thp-nm-1", "thp-nmx"):
        with pytest.raises(OpStreamError, match="workload|share"):
            wl.get(bad)


def test_streams_are_seeded_disjoint_and_ticked():
    a = wl.cpu_streams("thp-nm40", 3, 3000, seed=7, warmup=500)
    b = wl.cpu_streams("thp-nm40", 3, 3000, seed=7, warmup=500)
    assert all((x == y).all() for x, y in zip(a, b))
    assert not (a[0]["gfp"] == wl.cpu_streams("thp-nm40", 1, 3000, seed=8, warmup=500)[0]["gfp"]).all()
    slots = [set(s["slot"][s["op"] <= wl.OP_FREE].tolist()) for s in a]
    assert not slots[0] & slots[1] and not slots[1] & slots[2]
    skip = wl.warmup_ops("thp-nm40", 500)
    ticks = [(s["op"] == wl.OP_DECAY).sum() for s in a]
    assert ticks == [len(a[0]) // (wl.VMSTAT_TICK_OPS + 1)] * 3
    measured = a[0][skip:]
    assert (measured["op"] != wl.OP_DECAY).sum() == 3000


def test_a_captures_mix():
    w = wl.from_capture(CAPTURE)
    d = w.as_dict()
    assert d["nonmovable_thp_percent"] == 0.0                 # the capture has only movable THPs
    orders = {a["order"] for a in d["allocates"]}
    assert orders == {0, 9}
    assert "39168 mm_page_alloc events" in d["source"]
    assert len(wl.cpu_streams(w, 2, 200, seed=1)[1]) > 200
