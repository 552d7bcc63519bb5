import os

import pytest
from hypothesis import HealthCheck, settings

import pcpemu

settings.register_profile("dev", max_examples=25, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", max_examples=60, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def small(preset="v6.10", **kw):
    """A small x86_64-shaped machine: 64 MiB (DMA + DMA32), 2 CPUs."""
    kw.setdefault("memory", "64M")
    kw.setdefault("cpus", 2)
    return pcpemu.KernelConfig.preset(preset, **kw)


@pytest.fixture
def machine():
    return pcpemu.Machine(small(), seed=1)


@pytest.fixture(params=[0, 1, 2])
def seed(request):
    return request.param
