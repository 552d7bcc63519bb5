import pytest

import pcpemu


@pytest.fixture
def v610():
    def make(memory="1G", cpus=1, **kw):
        return pcpemu.Machine(pcpemu.KernelConfig.preset("v6.10", memory=memory, cpus=cpus, **kw), seed=1)
    return make


@pytest.fixture
def timing(benchmark):
    """The timing stats (seconds: min, mean, median, ...) of what ``benchmark`` ran. Under
    --benchmark-disable the function ran once, untimed, as a smoke run: the test ends there
    as skipped, with nothing to record."""
    def stats():
        if benchmark.disabled:
            pytest.skip("--benchmark-disable: ran once untimed; no figures to record")
        return benchmark.stats.stats
    return stats
