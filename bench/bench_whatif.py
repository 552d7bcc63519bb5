"""What-if lab benchmarks: the pcp_buddy policy's fast path against the
classic pcp, and the production-pattern runs (pcpemu.runs.whatif)."""

import pytest

from pcpemu import KernelConfig, Machine
from pcpemu.runs import whatif, workloads

pytestmark = pytest.mark.benchmark(group="whatif")


@pytest.mark.parametrize("pcp_policy", ["classic", "pcp_buddy"])
@pytest.mark.parametrize("cross_cpu", [False, True])
def test_churn_fastpath(benchmark, timing, pcp_policy, cross_cpu):
    # Order-0 churn on 4 CPUs; with cross_cpu each op runs on a random CPU,
    # so pcp_buddy routes most frees to another CPU's pcp.
    n = 200_000
    ops = workloads.order0_churn(n, live=512, cpus=(0, 1, 2, 3) if cross_cpu else (0,), seed=1)
    cfg = KernelConfig.preset("v6.10", memory="1G", zones="normal", cpus=4, pcp_policy=pcp_policy)

    def setup():
        return (Machine(cfg, seed=0), ops), {}

    res = benchmark.pedantic(lambda m, o: m.run(o), setup=setup, rounds=5)
    benchmark.extra_info["ns_per_op"] = timing().min * 1e9 / len(ops)
    benchmark.extra_info["zone_lock"] = res.stats["ZONE_LOCK"]
    benchmark.extra_info["routed_frees"] = res.stats["PCPB_ROUTED_FREE"]


@pytest.mark.parametrize("cpus", [16, 256])
@pytest.mark.parametrize("pcp_policy", ["classic", "pcp_buddy"])
@pytest.mark.parametrize("pattern", list(whatif.PATTERNS))
def test_pattern_virtual(benchmark, pattern, pcp_policy, cpus):
    r = benchmark.pedantic(whatif.run_pattern, args=(pattern, cpus, pcp_policy), rounds=1)
    for k in ("ops_per_sec", "zone_lock_acquisitions", "pages_per_acquisition", "pcp_hit"):
        benchmark.extra_info[k] = r[k]
