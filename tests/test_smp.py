import numpy as np
import pytest

from pcpemu.runs import smp
from pcpemu.errors import OpStreamError, PcpemuError
from pcpemu.machine import OP_DTYPE, OP_PCP_REVEAL

# Hand-priceable costs: no pcp or remote cost, 10 ns outside the lock, 100 ns held.
FLAT = smp.CostModel(op=10.0, cacheline=0.0, lock=100.0, page=0.0, remote=0.0, zone_lines=0)


def test_one_cpu_never_waits():
    r = smp.run_virtual(smp.smp_config("split", 1), smp.cpu_streams("mixed", 1, 2000, 3))
    assert r["zone_lock_acquisitions"] > 0
    assert r["lock_wait_ns"]["total"] == 0.0
    assert r["remote_cachelines"] == {"zone": 0, "pcp": 0}


def test_two_cpus_hammering_zone_lock_by_hand():
    # Order 4 has no pcp list: every alloc and free takes zone->lock once.
    # CPU0 takes it at 10 and holds 100; CPU1 waits 100; from then on each
    # CPU asks 10 ns after its release and waits for the other's 100 ns hold:
    # 90 ns. CPU1 ends last, at 10 + 200 * n.
    n = 50
    r = smp.run_virtual(smp.smp_config("split", 2), smp.cpu_streams("tight4", 2, n, 0), costs=FLAT)
    assert r["zone_lock_acquisitions"] == 2 * n
    assert r["pages_per_acquisition"] == 16
    assert r["lock_wait_ns"]["total"] == 100 + 2 * 90 * (n - 1)
    assert r["lock_wait_ns"]["p50"] == 90
    assert r["lock_hold_ns"]["total"] == 100 * 2 * n
    assert r["virtual_ns"] == 10 + 200 * n


def test_remote_zone_lines_follow_the_lock():
    # Every acquisition after the first finds the lock last held by the
    # other CPU: it pays 2 lines x 50 ns, so holds are 200 ns and waits 190.
    n = 20
    costs = smp.CostModel(op=10.0, cacheline=0.0, lock=100.0, page=0.0, remote=50.0, zone_lines=2)
    r = smp.run_virtual(smp.smp_config("single", 2), smp.cpu_streams("tight4", 2, n, 0), costs=costs)
    assert r["remote_cachelines"]["zone"] == 2 * (2 * n - 1)
    assert r["lock_hold_ns"]["total"] == 100 + 200 * (2 * n - 1)
    assert r["lock_wait_ns"]["total"] == 100 + 190 * (2 * n - 2)


def test_same_seed_same_result():
    cfg = smp.smp_config("split", 8)
    a = smp.run_virtual(cfg, smp.cpu_streams("mixed", 8, 500, 7))
    b = smp.run_virtual(cfg, smp.cpu_streams("mixed", 8, 500, 7))
    assert a == b
    c = smp.run_virtual(cfg, smp.cpu_streams("mixed", 8, 500, 8))
    assert c != a


def test_virtual_and_threads_agree_on_one_thread():
    for workload in ("mixed", "net", "order0"):
        streams = smp.cpu_streams(workload, 1, 3000, 5)
        cfg = smp.smp_config("split", 1)
        v = smp.run_virtual(cfg, streams)
        t = smp.run_threads(cfg, streams)
        for key in ("zone_lock_acquisitions", "pages_per_acquisition", "pcp_hit_rate", "pcp_cachelines_per_op"):
            assert v[key] == t[key], (workload, key)
        assert t["zone_lock_contended"] == 0 and t["pcp_trylock_fail"] == 0


def test_virtual_and_threads_agree_on_lock_count_under_contention():
    # Every op takes zone->lock exactly once, whatever the interleaving.
    streams = smp.cpu_streams("tight4", 2, 20000, 0)
    cfg = smp.smp_config("split", 2)
    v = smp.run_virtual(cfg, streams)
    t = smp.run_threads(cfg, streams)
    assert v["zone_lock_acquisitions"] == t["zone_lock_acquisitions"] == 40000


def test_split_costs_zone_lock_under_mixed_but_not_thp_only():
    cells = smp.sweep(["single", "split"], [4], ["thp", "mixed"], ops_per_cpu=400, seed=1)
    rows = {r["workload"]: r for r in smp.compare(cells)}
    # Movable THPs alone: the split changes nothing (0 vs 0 acquisitions: no ratio).
    acq = {c["policy"]: c["zone_lock_acquisitions"] for c in cells if c["workload"] == "thp"}
    assert acq["single"] == acq["split"]
    assert rows["thp"]["zone_lock"] in (None, 1.0) and rows["thp"]["cachelines"] == 1.0
    assert "same pcp cachelines touched per op" in rows["thp"]["verdict"]
    assert rows["mixed"]["zone_lock"] > 1.0
    assert "zone->lock acquisitions" in rows["mixed"]["verdict"]


def test_many_cpus():
    streams = smp.cpu_streams("thp", 256, 20, 0)
    r = smp.run_virtual(smp.smp_config("single", 256), streams)
    assert r["cpus"] == 256 and r["ops"] == 256 * (4 + 20)       # 4 THPs of fill, then 20 ops
    assert r["lock_wait_ns"]["total"] > 0


def test_calibration_matches_page_bench03():
    c = smp.calibration_check(ops_per_cpu=400)
    assert c["within_25pct"], c
    assert c["zone_lock"]["model"] > 5 * c["order0_pcp"]["model"]


@pytest.mark.parametrize("call, match", [
    (lambda: smp.cpu_streams("vm", 2, 10, 0), "unknown workload"),
    (lambda: smp.cpu_streams("thp", 2, 1, 0), "ops_per_cpu"),
    (lambda: smp.smp_config("double", 2), "unknown THP-list policy"),
    (lambda: smp.CostModel(lock=-1.0), "CostModel.lock"),
    (lambda: smp.sweep(["single"], [2], ["nope"]), "unknown workload"),
])
def test_bad_input(call, match):
    with pytest.raises(PcpemuError, match=match):
        call()


def test_bad_streams_rejected_before_any_op():
    cfg = smp.smp_config("split", 2)
    a, b = smp.cpu_streams("order0", 2, 10, 0)
    with pytest.raises(PcpemuError, match="share slots"):
        smp.run_virtual(cfg, [a, _with_slots(b, a["slot"])])
    with pytest.raises(PcpemuError, match="another CPU"):
        smp.run_virtual(cfg, [b, a])
    with pytest.raises(PcpemuError, match="streams for a machine"):
        smp.run_virtual(smp.smp_config("split", 1), [a, b])
    drain_all = np.zeros(1, dtype=OP_DTYPE)
    drain_all["op"] = 3
    with pytest.raises(PcpemuError, match="drain_all"):
        smp.run_threads(smp.smp_config("split", 1), [drain_all])
    reveal = np.zeros(1, dtype=OP_DTYPE)
    reveal["op"] = OP_PCP_REVEAL
    with pytest.raises(PcpemuError, match="pcp_reveal"):
        smp.run_threads(smp.smp_config("split", 1), [reveal])
    double_free = np.zeros(2, dtype=OP_DTYPE)
    double_free["op"] = 1
    with pytest.raises(OpStreamError, match="free of a slot"):
        smp.run_virtual(smp.smp_config("split", 1), [double_free])


def _with_slots(stream, slots):
    out = stream.copy()
    out["slot"] = slots
    return out


def test_per_type_pcp_is_allocated_at_its_size():
    # 15 lists: offsetof(lists) 32 + 15 * 16 = 272 bytes -> 5 cachelines.
    from pcpemu.machine import Machine
    m = Machine(smp.smp_config("per-type", 2))
    assert m.pcp_alloc_size == 320
    r = smp.run_virtual(smp.smp_config("per-type", 4), smp.cpu_streams("mixed", 4, 500, 0), warmup=64)
    assert r["ops"] == 2000                 # the 64-block fill is warm-up


def test_calibrate_costs_measures_this_machine():
    costs = smp.calibrate_costs(ops=20000)
    assert isinstance(costs, smp.CostModel)
    assert costs.op > 0
    assert (costs.page, costs.zone_lines) == (smp.CostModel().page, smp.CostModel().zone_lines)


def test_two_cpus_with_batch_1_by_hand():
    # A 16 MiB zone has batch 1; high is pinned at max(4096/1024/2, 4 * batch) = 4
    # and alloc_factor cannot grow (PCP_BATCH_SCALE_MAX 0). Each CPU allocates 8
    # pages, then frees them: every alloc refills one page (8 acquisitions);
    # the 4th to 8th free find count == high and drain one page (5). With
    # FLAT costs the first eight lock ops alternate as in the order-4 case
    # (CPU0 waits 7 x 90, CPU1 100 + 7 x 90); each CPU's first draining free
    # waits 60 behind the other's last refill or drain, the next four 90 each.
    from pcpemu.kernel.config import KernelConfig
    from pcpemu.runs.workloads import OP_FREE, make_ops

    cfg = KernelConfig(memory="16M", zones="normal", cpus=2, thp=False, thp_lists="none",
                       percpu_pagelist_high_fraction=1024, pcp_batch_scale_max=0)
    streams = []
    for cpu in (0, 1):
        ops = make_ops(16)
        ops["cpu"] = cpu
        ops["slot"] = cpu * 8 + np.tile(np.arange(8), 2)
        ops["op"][8:] = OP_FREE
        streams.append(ops)
    r = smp.run_virtual(cfg, streams, costs=FLAT)
    assert r["zone_lock_acquisitions"] == 2 * (8 + 5)
    assert r["lock_hold_ns"]["total"] == 100 * 26
    assert r["lock_wait_ns"]["total"] == (7 * 90) + (100 + 7 * 90) + 2 * (60 + 4 * 90)
    assert r["virtual_ns"] == 2610


def test_warmup_counts_nowhere_and_carries_its_blocks():
    # The measured run frees blocks the warm-up allocated (same slots array);
    # its counters match a run of the whole stream minus the warm-up's.
    streams = smp.cpu_streams("thp-nm40", 2, 400, 3, warmup=100)
    skip = smp.wl.warmup_ops("thp-nm40", 100)
    assert skip == 8 + 100 and all(len(s) == skip + 400 for s in streams)
    whole = smp.run_virtual(smp.smp_config("split", 2), streams)
    warm = smp.run_virtual(smp.smp_config("split", 2), [s[:skip] for s in streams])
    measured = smp.run_virtual(smp.smp_config("split", 2), streams, warmup=skip)
    assert measured["ops"] == 800
    assert measured["zone_lock_acquisitions"] == whole["zone_lock_acquisitions"] - warm["zone_lock_acquisitions"]
    with pytest.raises(PcpemuError, match="warmup"):
        smp.run_virtual(smp.smp_config("split", 2), streams, warmup=len(streams[0]))


def test_cli_bench_text_prints_no_ratio_where_both_are_0(capsys):
    from pcpemu.tools import cli
    assert cli.main(["bench", "--cpus", "1", "--ops", "100", "--workloads", "thp"]) == cli.EXIT_OK
    row = [line for line in capsys.readouterr().out.splitlines() if line.startswith("thp ")][0]
    assert row.split()[2:4] == ["-", "-"]          # no zone->lock and no wait under either policy
