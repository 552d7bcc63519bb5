"""Overhead of the sweep engine: 10,000 tiny runs on the process pool and on Dask.

Run: python3 -m pytest bench/bench_sweep.py --benchmark-only. Figures land in extra_info:

- ``overhead_pct`` = (wall * workers - sum of run times) / sum of run times, the
  run times measured around each run inside its worker: the worker time the
  engine spends on anything but runs (scheduling, pickling, waiting, writing).
- ``overhead_vs_serial_pct``: the same with the sum of run times of the same
  runs done one after the other in this process, which also counts what
  parallel runs lose to each other (shared caches, memory bandwidth, a busy host).
"""

import pytest

from pcpemu.tools.sweep import parse_spec, run_sweep

N = 10_000
#: A tiny run: a 16 MiB machine (the smallest), 200 churn steps; ~0.5 ms.
TINY = {"memory": "16M", "ops": 200, "live": 32}
WORKERS = 2


def _spec():
    return parse_spec({"measure": "workload", "params": TINY, "axes": {"seed": list(range(N))}})


@pytest.fixture(scope="module")
def serial_s(tmp_path_factory):
    out = tmp_path_factory.mktemp("serial") / "serial.jsonl"
    return run_sweep(_spec(), str(out), executor="inline").run_s


@pytest.fixture(scope="module")
def dask_address():
    distributed = pytest.importorskip("distributed")
    import dask

    # As pcpemu does for --scheduler local; a cluster of your own wants the same setting.
    with dask.config.set({"distributed.worker.profile.enabled": False}), distributed.LocalCluster(
            n_workers=WORKERS, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=None) as cluster:
        yield cluster.scheduler_address


def _measure(benchmark, tmp_path, serial_s, **how):
    spec, paths = _spec(), iter(range(100))
    outcome = {}

    def setup():
        return (spec, str(tmp_path / f"r{next(paths)}.jsonl")), how

    def run(spec, path, **kw):
        outcome["o"] = run_sweep(spec, path, **kw)
    benchmark.pedantic(run, setup=setup, rounds=1, iterations=1)
    o = outcome["o"]
    assert o.ran == N and o.failed == 0
    benchmark.extra_info.update(
        runs=N, executor=o.executor, workers=o.workers, chunk=o.chunk, wall_s=o.wall_s, run_s=o.run_s,
        serial_run_s=serial_s, overhead_pct=100 * o.overhead,
        overhead_vs_serial_pct=100 * (o.wall_s * o.workers - serial_s) / serial_s, runs_per_s=N / o.wall_s)
    return o


@pytest.mark.benchmark(group="sweep")
def test_process_pool_10k_tiny_runs(benchmark, tmp_path, serial_s):
    o = _measure(benchmark, tmp_path, serial_s, executor="processes", workers=WORKERS)
    assert o.overhead < 0.20


@pytest.mark.benchmark(group="sweep")
def test_dask_2_workers_10k_tiny_runs(benchmark, tmp_path, serial_s, dask_address):
    o = _measure(benchmark, tmp_path, serial_s, scheduler=dask_address)
    assert o.workers == WORKERS
    assert o.overhead < 0.20
