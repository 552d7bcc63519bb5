import pytest

from pcpemu import ConfigError, KernelConfig
from pcpemu.kernel.config import parse_size


def test_parse_size_units():
    assert parse_size("8G", "memory") == 8 << 18
    assert parse_size("512M", "memory") == 131072
    assert parse_size("2048K", "memory") == 512
    assert parse_size("4096 pages", "memory") == 4096
    assert parse_size(1234, "memory") == 1234


@pytest.mark.parametrize("bad", ["8X", "-1G", "1.5G", "", "6K"])
def test_parse_size_rejects(bad):
    with pytest.raises(ConfigError, match="memory"):
        parse_size(bad, "memory")


def _spans(cfg):
    return [(z.idx, z.start_pfn, z.spanned) for z in cfg.zone_layout()]


def test_x86_64_zone_layout():
    cfg = KernelConfig(memory="8G")
    assert _spans(cfg) == [(0, 0, 4096), (1, 4096, (1 << 20) - 4096), (2, 1 << 20, 1 << 20)]
    assert _spans(KernelConfig(memory="64M")) == [(0, 0, 4096), (1, 4096, 16384 - 4096)]
    assert _spans(KernelConfig(memory="64M", zones="normal")) == [(2, 0, 16384)]
    assert all(z.managed == z.present == z.spanned and z.free_start == z.start_pfn for z in cfg.zone_layout())


def test_explicit_zones_start_on_max_order_boundaries():
    cfg = KernelConfig(zones={"DMA": 3998, "DMA32": 782336, "Normal": 1048576})
    assert _spans(cfg) == [(0, 0, 3998), (1, 4096, 782336), (2, 4096 + 782336, 1048576)]
    assert cfg.memory == 4096 + 782336 + 1048576


def test_cma_default_is_top_of_memory():
    cfg = KernelConfig(memory="8G", cma="4G")
    assert cfg.cma_base == 1 << 20 and cfg.cma == 1 << 20


@pytest.mark.parametrize("kw, field", [
    ({"cpus": 0}, "cpus"),
    ({"cpus": 5000}, "cpus"),
    ({"memory": "1M"}, "memory"),
    ({"watermark_scale_factor": 0}, "watermark_scale_factor"),
    ({"percpu_pagelist_high_fraction": 4}, "percpu_pagelist_high_fraction"),
    ({"thp_lists": "double"}, "thp_lists"),
    ({"thp": False}, "thp_lists"),
    ({"cma": "1M"}, "cma"),
    ({"memory": "8G", "cma": "6G"}, "cma"),
    ({"memory": "1G", "cma": "2G"}, "do not fit"),
    ({"cacheline": 32}, "cacheline"),
    ({"mthp_orders": {9: "split"}}, "mthp_orders"),
    ({"mthp_orders": {4: "triple"}}, "mthp_orders"),
    ({"zones": {"HighMem": 10}}, "zones"),
    ({"pcp_batch_scale_max": 7}, "pcp_batch_scale_max"),
])
def test_validation_names_the_field(kw, field):
    with pytest.raises(ConfigError, match=field):
        KernelConfig(**kw)


def test_presets():
    assert KernelConfig.preset("v6.9").thp_lists == "single"
    assert KernelConfig.preset("v6.10").thp_lists == "split"
    assert KernelConfig.preset("android").pcp_cma
    with pytest.raises(ConfigError, match="unknown preset"):
        KernelConfig.preset("v9.99")
