"""Boot-time zone tunables: min_free_kbytes, watermarks, lowmem_reserve, pcp batch/high.

Mirrors calculate_min_free_kbytes(), __setup_per_zone_wmarks(),
setup_per_zone_lowmem_reserve(), zone_batchsize(), zone_highsize() and
zone_set_pageset_high_and_batch() in mm/page_alloc.c, and
set_recommended_min_free_kbytes() in mm/khugepaged.c (v6.10), run in boot order.
"""

from __future__ import annotations

import dataclasses
import math

from .config import PAGE_SHIFT, PAGEBLOCK_NR_PAGES, KernelConfig
from .gfp import MAX_NR_ZONES, MIGRATE_PCPTYPES, ZONE_MOVABLE, ZONE_NAMES, ZONE_NORMAL

__all__ = ["NR_WMARK", "WMARK_HIGH", "WMARK_LOW", "WMARK_MIN", "WMARK_PROMO", "ZoneParams", "boot_pageset", "setup_zones",
           "zone_batchsize", "zone_highsize"]

# enum zone_watermarks: the indices of ZoneParams.watermark (zone->_watermark[]).
WMARK_MIN, WMARK_LOW, WMARK_HIGH, WMARK_PROMO, NR_WMARK = range(5)

# sysctl_lowmem_reserve_ratio[]: DMA, DMA32, Normal, Movable (Device unset).
LOWMEM_RESERVE_RATIO = (256, 256, 32, 0, 0)
MIN_PERCPU_PAGELIST_HIGH_FRACTION = 8
SWAP_CLUSTER_MAX = 32


@dataclasses.dataclass(frozen=True)
class ZoneParams:
    """One zone's boot-time values, as /proc/zoneinfo would show them."""

    idx: int
    name: str
    start_pfn: int
    spanned: int
    managed: int
    cma_pages: int
    watermark: tuple[int, int, int, int]  # min, low, high, promo
    lowmem_reserve: tuple[int, ...]
    batch: int
    high_min: int
    high_max: int


def zone_batchsize(managed: int) -> int:
    """pcp->batch for a zone of ``managed`` pages (zone_batchsize, CONFIG_MMU)."""
    batch = min(managed >> 10, (1 << 20) // (1 << PAGE_SHIFT))
    batch //= 4
    if batch < 1:
        batch = 1
    n = batch + batch // 2
    return (1 << (n.bit_length() - 1)) - 1


def zone_highsize(managed: int, low_wmark: int, batch: int, ncpus: int, fraction: int) -> int:
    """pcp high for a zone split over ``ncpus`` CPUs of its node (zone_highsize)."""
    total = low_wmark if fraction == 0 else managed // fraction
    return max(total // ncpus, batch << 2)


def _nr_free_buffer_pages(managed: list[int], high: list[int]) -> int:
    # nr_free_zone_pages(gfp_zone(GFP_USER)): zones up to Normal, less their high mark.
    return sum(max(m - h, 0) for m, h in zip(managed[: ZONE_NORMAL + 1], high))


def _setup_wmarks(managed: list[int], min_free_kbytes: int, scale: int) -> list[tuple[int, int, int, int]]:
    pages_min = min_free_kbytes >> (PAGE_SHIFT - 10)
    lowmem = sum(m for i, m in enumerate(managed) if i != ZONE_MOVABLE)
    marks = []
    for i, m in enumerate(managed):
        tmp = pages_min * m // lowmem if lowmem else 0
        if i == ZONE_MOVABLE:
            wmin = min(max(m // 1024, SWAP_CLUSTER_MAX), 128)
        else:
            wmin = tmp
        delta = max(tmp >> 2, m * scale // 10000)
        marks.append((wmin, wmin + delta, wmin + 2 * delta, wmin + 3 * delta))
    return marks


def _lowmem_reserve(managed: list[int]) -> list[tuple[int, ...]]:
    out = []
    for i in range(MAX_NR_ZONES):
        ratio = LOWMEM_RESERVE_RATIO[i]
        clear = not ratio or not managed[i]
        reserve, upper = [0] * MAX_NR_ZONES, 0
        for j in range(i + 1, MAX_NR_ZONES):
            upper += managed[j]
            reserve[j] = 0 if clear or not managed[j] else upper // ratio
        out.append(tuple(reserve))
    return out


def _min_free_kbytes(cfg: KernelConfig, managed: list[int]) -> int:
    if cfg.min_free_kbytes is not None:
        return cfg.min_free_kbytes
    # calculate_min_free_kbytes() at postcore_initcall: no watermarks set yet.
    lowmem_kbytes = _nr_free_buffer_pages(managed, [0] * MAX_NR_ZONES) * 4
    kbytes = min(max(math.isqrt(lowmem_kbytes * 16), 128), 262144)
    if not cfg.thp:
        return kbytes
    # set_recommended_min_free_kbytes() when khugepaged starts, after the first
    # watermark setup.
    high = [w[2] for w in _setup_wmarks(managed, kbytes, cfg.watermark_scale_factor)]
    nr_zones = sum(1 for i, m in enumerate(managed) if m and i <= ZONE_NORMAL)
    recommended = PAGEBLOCK_NR_PAGES * nr_zones * 2
    recommended += PAGEBLOCK_NR_PAGES * nr_zones * MIGRATE_PCPTYPES * MIGRATE_PCPTYPES
    recommended = min(recommended, _nr_free_buffer_pages(managed, high) // 20)
    recommended <<= PAGE_SHIFT - 10
    return max(kbytes, recommended)


def setup_zones(cfg: KernelConfig) -> tuple[int, list[ZoneParams]]:
    """Every zone's boot-time values for ``cfg``, and the min_free_kbytes in force.

    :return: ``(min_free_kbytes, [ZoneParams for DMA, DMA32, Normal, Movable, Device])``;
        unpopulated zones have zero pages.
    """
    start = [0] * MAX_NR_ZONES
    managed = [0] * MAX_NR_ZONES
    for idx, first, pages in cfg.zone_spans():
        start[idx], managed[idx] = first, pages
    kbytes = _min_free_kbytes(cfg, managed)
    marks = _setup_wmarks(managed, kbytes, cfg.watermark_scale_factor)
    reserve = _lowmem_reserve(managed)
    zones = []
    for i in range(MAX_NR_ZONES):
        m = managed[i]
        cma = cfg.cma if cfg.cma and start[i] <= (cfg.cma_base or 0) < start[i] + m else 0
        batch = max(1, zone_batchsize(m))
        if cfg.percpu_pagelist_high_fraction:
            high_min = high_max = zone_highsize(m, marks[i][1], batch, cfg.cpus, cfg.percpu_pagelist_high_fraction)
        else:
            high_min = zone_highsize(m, marks[i][1], batch, cfg.cpus, 0)
            high_max = zone_highsize(m, marks[i][1], batch, cfg.cpus, MIN_PERCPU_PAGELIST_HIGH_FRACTION)
        zones.append(ZoneParams(i, ZONE_NAMES[i], start[i], m, m, cma, marks[i], reserve[i], batch, high_min, high_max))
    return kbytes, zones


def boot_pageset(cfg: KernelConfig, zone: ZoneParams) -> tuple[int, int, int]:
    """``(batch, high_min, high_max)`` of the CMA zone's pcps when cma_activate_area
    frees the CMA pageblocks (core_initcall).

    They were set by setup_per_cpu_pageset and the CPU-online callbacks
    (zone_pcp_update) from the managed pages of that time, which do not yet
    include CMA, and the low watermark, which init_per_zone_wmark_min only sets
    at postcore_initcall (0 until then). vm.percpu_pagelist_high_fraction is a
    sysctl applied after the initcalls, so the default fraction rules.
    """
    managed = zone.managed - zone.cma_pages
    batch = max(1, zone_batchsize(managed))
    return (batch, zone_highsize(managed, 0, batch, cfg.cpus, 0),
            zone_highsize(managed, 0, batch, cfg.cpus, MIN_PERCPU_PAGELIST_HIGH_FRACTION))
