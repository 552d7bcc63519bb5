"""Contention benchmarks: zone->lock and pcp cachelines of the THP-list
policies, 1..N CPUs, in virtual time and on real threads (pcpemu.runs.smp)."""

import os

import numpy as np
import pytest

from pcpemu.runs import smp
from pcpemu.machine import Machine

pytestmark = pytest.mark.benchmark(group="contention")

POLICIES = ["single", "split", "per-type", "none"]
WORKLOADS = ["thp", "mixed", "order0", "net"]
THREADS = list(range(1, (os.cpu_count() or 1) + 1))


def _keep(info, r, keys):
    for k in keys:
        info[k] = r[k]


@pytest.mark.parametrize("policy", ["single", "split"])
@pytest.mark.parametrize("workload", ["tight0", "tight4"])
def test_fastpath(benchmark, timing, policy, workload):
    # One CPU, one nogil Machine.run of an alloc+free loop: order 0 hits the
    # pcp, order 4 takes zone->lock on every op.
    n = 200000
    ops = smp.cpu_streams(workload, 1, n, 0)[0]

    def setup():
        return (Machine(smp.smp_config(policy, 1), seed=0), ops), {}

    def run(m, ops):
        return m.run(ops)

    res = benchmark.pedantic(run, setup=setup, rounds=5)
    st = res.stats
    benchmark.extra_info["ns_per_op"] = timing().min * 1e9 / n
    benchmark.extra_info["zone_lock"] = st["ZONE_LOCK"]
    benchmark.extra_info["zone_lock_pages"] = st["ZONE_LOCK_PAGES"]
    benchmark.extra_info["pcp_cachelines"] = {k: v["mean"] for k, v in st["pcp_cachelines"].items()}


@pytest.mark.parametrize("cpus", [1, 8, 64, 256])
@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("workload", WORKLOADS)
def test_virtual(benchmark, workload, policy, cpus):
    streams = smp.cpu_streams(workload, cpus, 500, 0)
    r = benchmark.pedantic(smp.run_virtual, args=(smp.smp_config(policy, cpus), streams), rounds=1)
    _keep(benchmark.extra_info, r, ["ops_per_sec", "zone_lock_per_1k_ops", "pages_per_acquisition",
                                    "pcp_cachelines_per_op", "lock_wait_ns", "lock_hold_ns",
                                    "remote_cachelines"])
    benchmark.extra_info["pcp_hit_rate"] = {str(k): v for k, v in r["pcp_hit_rate"].items()}


@pytest.mark.parametrize("cpus", [8, 64, 256])
@pytest.mark.parametrize("workload", WORKLOADS)
def test_split_vs_single(benchmark, workload, cpus):
    cells = benchmark.pedantic(smp.sweep, args=(["single", "split"], [cpus], [workload], 500, 0), rounds=1)
    row = smp.compare(cells)[0]
    benchmark.extra_info.update({k: row[k] for k in ("zone_lock", "lock_wait", "cachelines",
                                                     "throughput", "verdict")})


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("policy", ["single", "split"])
@pytest.mark.parametrize("workload", ["mixed", "order0", "tight4"])
def test_threads(benchmark, workload, policy, threads):
    streams = smp.cpu_streams(workload, threads, 200000 if workload == "tight4" else 50000, 0)
    r = benchmark.pedantic(smp.run_threads, args=(smp.smp_config(policy, threads), streams), rounds=3)
    _keep(benchmark.extra_info, r, ["ops_per_sec", "wall_s", "zone_lock_acquisitions", "zone_lock_contended",
                                    "zone_lock_spins", "pcp_trylock_fail"])


def test_calibration(benchmark):
    c = benchmark.pedantic(smp.calibration_check, rounds=1)
    benchmark.extra_info.update({k: c[k] for k in smp.KERNEL_FACTORS})
    assert c["within_25pct"], c


def test_calibrated_here(benchmark):
    # The cost model measured on this machine, and what it predicts for 8 CPUs.
    costs = benchmark.pedantic(smp.calibrate_costs, rounds=1)
    c = smp.calibration_check(costs=costs)
    benchmark.extra_info["costs"] = {k: float(v) for k, v in vars(costs).items()}
    benchmark.extra_info.update({k: c[k] for k in smp.KERNEL_FACTORS})
    assert np.isfinite(c["zone_lock"]["model"])
