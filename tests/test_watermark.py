import pytest

from pcpemu import KernelConfig
from pcpemu.kernel.watermark import setup_zones, zone_batchsize, zone_highsize


@pytest.mark.parametrize("managed, batch", [
    (1 << 20, 63),        # >= 1 GiB: 256 -> 64 -> 96 -> 64 -> 63
    (163840, 31),         # 160 -> 40 -> 60 -> 32 -> 31
    (65536, 15),          # 64 -> 16 -> 24 -> 16 -> 15
    (3840, 0),            # 3 -> 0 -> 1 -> 1 -> 0 (the caller takes max(1, .))
])
def test_zone_batchsize(managed, batch):
    assert zone_batchsize(managed) == batch


def test_zone_highsize():
    assert zone_highsize(1 << 20, 10560, 63, 4, 0) == 2640
    assert zone_highsize(1 << 20, 10560, 63, 4, 8) == 32768
    assert zone_highsize(4096, 41, 1, 4, 0) == 10          # low/ncpu
    assert zone_highsize(4096, 1, 63, 64, 0) == 252         # never below batch * 4


def test_single_zone_watermarks_by_hand():
    # 1 GiB, one Normal zone, THP off: min_free_kbytes = isqrt(1 GiB in KiB * 16) = 4096.
    kbytes, zones = setup_zones(KernelConfig(memory="1G", zones="normal", thp=False, thp_lists="none", cpus=2))
    normal = zones[2]
    assert kbytes == 4096
    # pages_min 1024; delta = max(1024 >> 2, 262144 * 10 / 10000) = 262
    assert normal.watermark[:3] == (1024, 1286, 1548)
    assert normal.batch == 63
    assert normal.high_min == 1286 // 2 and normal.high_max == 262144 // 8 // 2


def test_thp_raises_min_free_kbytes():
    # 3 zones: (2 + 9) * 512 * 3 pages = 16896 pages = 67584 KiB, below 5% of lowmem.
    kbytes, _ = setup_zones(KernelConfig(memory="8G"))
    assert kbytes == 67584
    kbytes, _ = setup_zones(KernelConfig(memory="8G", thp=False, thp_lists="none"))
    assert kbytes == 11585  # isqrt(8 GiB in KiB * 16)


def test_lowmem_reserve_and_explicit_zones():
    _, zones = setup_zones(KernelConfig(zones={"DMA": 3840, "DMA32": 772918, "Normal": 163840}, cpus=2))
    assert zones[0].lowmem_reserve == (0, 772918 // 256, (772918 + 163840) // 256, 0, 0)
    assert zones[1].lowmem_reserve == (0, 0, 163840 // 256, 0, 0)
    assert zones[2].lowmem_reserve == (0, 0, 0, 0, 0)
    assert [z.batch for z in zones[:3]] == [1, 63, 31]


def test_percpu_pagelist_high_fraction_pins_high():
    _, zones = setup_zones(KernelConfig(memory="8G", percpu_pagelist_high_fraction=100, cpus=4))
    assert zones[2].high_min == zones[2].high_max == (1 << 20) // 100 // 4
