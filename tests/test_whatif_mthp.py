"""The what-if lab, question 1: mTHP workloads, contention and the verdict."""

import json

import numpy as np
import pytest

from pcpemu import Machine
from pcpemu.errors import PcpemuError, SweepSpecError
from pcpemu.runs import whatif
from pcpemu.stats import mean_ci
from pcpemu.tools.sweep import parse_spec, run_sweep
from pcpemu.tools import whatif_report


def test_mthp_streams_are_seeded_and_well_formed():
    a = whatif.mthp_streams(3, 200, seed=5, orders=(4, 7), share=0.5, kind="mixed")
    b = whatif.mthp_streams(3, 200, seed=5, orders=(4, 7), share=0.5, kind="mixed")
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    allocs = np.concatenate([s[s["op"] == 0] for s in a])
    assert set(np.unique(allocs["order"])) == {0, 4, 7}
    # About half the allocations are mTHP, of both mobilities.
    assert 0.35 < (allocs["order"] > 0).mean() < 0.65
    assert len(np.unique(allocs["gfp"][allocs["order"] > 0])) == 2
    for k, s in enumerate(a):
        assert (s["cpu"] == k).all()
    m = Machine(whatif.mthp_config(3, (4, 7)))
    for s in a:
        m.run(s)
    m.check()


def test_no_mthp_share_means_only_order0():
    s = whatif.mthp_streams(1, 100, 0, orders=(6,), share=0.0)[0]
    assert (s["order"] == 0).all()


@pytest.mark.parametrize("kw,words", [({"orders": (3,)}, "subset"), ({"share": 1.5}, "fraction"),
                                      ({"kind": "cma"}, "kind"), ({"orders": ()}, "subset")])
def test_bad_mthp_parameters(kw, words):
    with pytest.raises(PcpemuError, match=words):
        whatif.mthp_streams(1, 10, 0, **{"orders": (4,), **kw})


def test_lists_for_an_mthp_order_cut_zone_lock():
    # Without a list, every order-4 alloc and free takes zone->lock.
    without = whatif.run_mthp(4, (4,), 1.0, "movable", False, seed=0, ops_per_cpu=400)
    with_ = whatif.run_mthp(4, (4,), 1.0, "movable", True, seed=0, ops_per_cpu=400)
    assert without["zone_lock_acquisitions"] == without["ops"]
    assert with_["zone_lock_acquisitions"] < without["zone_lock_acquisitions"] / 10
    assert with_["ops_per_sec"] > without["ops_per_sec"]


def test_one_seed_gives_no_interval_and_no_verdict():
    # The what-if lab uses the report's one statistic (stats.mean_ci): one seed has
    # no interval, so no "whole interval above 1" verdict can rest on it.
    one, three = mean_ci([1.5]), mean_ci([1.4, 1.5, 1.6])
    assert one["lo"] is None and "no interval" in whatif_report._iv(one)
    assert not whatif_report._above(one, 1.0) and not whatif_report._below(one, 2.0)
    assert whatif_report._above(three, 1.0) and whatif_report._below(three, 2.0)
    assert three["hi"] - three["mean"] == pytest.approx(4.303 * 0.1 / 3 ** 0.5)


def test_mthp_report_is_reproducible(tmp_path, monkeypatch):
    monkeypatch.setitem(whatif_report.MODES, "quick", {"cpus": [1, 4], "seeds": [0, 1], "ops_per_cpu": 120,
                                                       "shares": [0.5], "verdict_cpus": 4})
    rep = whatif_report.build_what_if("mthp", "quick", seed=3)
    again = whatif_report.build_what_if("mthp", "quick", seed=3)
    assert json.dumps(rep, sort_keys=True) == json.dumps(again, sort_keys=True)
    assert rep["command"] == "pcpemu report --what-if mthp --quick --seed 3"
    assert [d["order"] for d in rep["verdict"]["orders"]] == [4, 5, 6, 7, 8]
    # The verdict follows the intervals, not a fixed answer.
    for d in rep["verdict"]["orders"]:
        cells = [c for c in rep["study"]["per_order"] if c["order"] == d["order"]]
        expect = all(c["ops_per_sec"]["ratio"]["lo"] > 1 and c["zone_lock"]["ratio"]["hi"] < 1 for c in cells)
        assert d["worth_a_list"] == expect
    paths = whatif_report.write_what_if(str(tmp_path / "out"), rep)
    assert [p.rsplit("/", 1)[1] for p in paths] == ["report.html", "report.json", "report.md"]
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Verdict: which mTHP orders" in md and "x86_64/64 +" in md


def test_cli_what_if_flag(tmp_path, monkeypatch, capsys):
    from pcpemu.tools import cli
    monkeypatch.setitem(whatif_report.MODES, "quick", {"cpus": [2], "seeds": [0], "ops_per_cpu": 60,
                                                       "shares": [0.5], "verdict_cpus": 2})
    assert cli.main(["report", "--what-if", "mthp", "--quick", "-o", str(tmp_path / "r")]) == 0
    assert json.loads((tmp_path / "r" / "report.json").read_text())["what_if"] == "mthp"


def test_mthp_sweep_kind(tmp_path):
    spec = parse_spec({"measure": "mthp", "params": {"cpus": 2, "ops_per_cpu": 80},
                       "axes": {"lists": [False, True], "orders": [[4], [5, 8]]}})
    run_sweep(spec, str(tmp_path / "r.jsonl"), executor="inline")
    recs = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert len(recs) == 4
    with pytest.raises(SweepSpecError, match="subset"):
        parse_spec({"measure": "mthp", "axes": {"orders": [[2]]}})
