"""Boot-time zone tunables: min_free_kbytes, watermarks, lowmem_reserve, pcp batch/high.

Mirrors calculate_min_free_kbytes(), __setup_per_zone_wmarks(),
setup_per_zone_lowmem_reserve(), zone_batchsize(), zone_highsize() and
zone_set_pageset_high_and_batch() in mm/page_alloc.c, and
set_recommended_min_free_kbytes() in mm/khugepaged.c (v6.10), run in boot order.
"""

from __future__ import annotations

import dataclasses
import math

from .config import PAGE_SHIFT, PAGEBLOCK_NR_PAGES, KernelConfig, ZoneSpan
from .kversion import parse_version
from .gfp import MAX_NR_ZONES, MIGRATE_PCPTYPES, ZONE_MOVABLE, ZONE_NAMES, ZONE_NORMAL

__all__ = ["NR_WMARK", "WMARK_HIGH", "WMARK_LOW", "WMARK_MIN", "WMARK_PROMO", "ZoneParams", "boot_pageset",
           "empty_upper_zeroed", "lowmem_reserves", "setup_zones", "zone_batchsize", "zone_highsize", "zone_watermarks"]

# enum zone_watermarks: the indices of ZoneParams.watermark (zone->_watermark[]).
WMARK_MIN, WMARK_LOW, WMARK_HIGH, WMARK_PROMO, NR_WMARK = range(5)

MIN_PERCPU_PAGELIST_HIGH_FRACTION = 8
SWAP_CLUSTER_MAX = 32


@dataclasses.dataclass(frozen=True)
class ZoneParams:
    """One zone's boot-time values, as /proc/zoneinfo would show them."""

    idx: int
    name: str
    start_pfn: int
    spanned: int
    present: int
    managed: int
    free_start: int  # the managed pages are [free_start, free_start + managed) (ZoneSpan)
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


def zone_watermarks(managed: list[int], min_free_kbytes: int, scale: int,
                    other_lowmem: int = 0) -> list[tuple[int, int, int, int]]:
    """min, low, high and promo of every zone (__setup_per_zone_wmarks), from each
    zone's managed pages; ``other_lowmem``: the other nodes' share of lowmem_pages."""
    pages_min = min_free_kbytes >> (PAGE_SHIFT - 10)
    lowmem = sum(m for i, m in enumerate(managed) if i != ZONE_MOVABLE) + other_lowmem
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


def lowmem_reserves(managed: list[int], ratios: tuple[int, ...], empty_upper_zeroed: bool) -> list[tuple[int, ...]]:
    """Every zone's lowmem_reserve[] (setup_per_zone_lowmem_reserve). Before
    eae116d1f044 (v6.14) the reserve against an empty upper zone was 0 (907ec5fca3dc, v5.9)."""
    out = []
    for i in range(MAX_NR_ZONES):
        ratio = ratios[i]
        clear = not ratio or not managed[i]
        reserve, upper = [0] * MAX_NR_ZONES, 0
        for j in range(i + 1, MAX_NR_ZONES):
            upper += managed[j]
            reserve[j] = 0 if clear or (empty_upper_zeroed and not managed[j]) else upper // ratio
        out.append(tuple(reserve))
    return out


def _min_free_kbytes(cfg: KernelConfig, managed: list[int]) -> int:
    if cfg.min_free_kbytes is not None:
        return cfg.min_free_kbytes
    # calculate_min_free_kbytes() at postcore_initcall: no watermarks set yet.
    # Other nodes count in full (their high marks and zone count below are not known).
    lowmem_kbytes = (_nr_free_buffer_pages(managed, [0] * MAX_NR_ZONES) + cfg.other_nodes_lowmem) * 4
    kbytes = min(max(math.isqrt(lowmem_kbytes * 16), 128), 262144)
    if not cfg.thp:
        return kbytes
    # set_recommended_min_free_kbytes() when khugepaged starts, after the first
    # watermark setup.
    high = [w[WMARK_HIGH] for w in zone_watermarks(managed, kbytes, cfg.watermark_scale_factor, cfg.other_nodes_lowmem)]
    nr_zones = sum(1 for i, m in enumerate(managed) if m and i <= ZONE_NORMAL)
    recommended = PAGEBLOCK_NR_PAGES * nr_zones * 2
    recommended += PAGEBLOCK_NR_PAGES * nr_zones * MIGRATE_PCPTYPES * MIGRATE_PCPTYPES
    recommended = min(recommended, (_nr_free_buffer_pages(managed, high) + cfg.other_nodes_lowmem) // 20)
    recommended <<= PAGE_SHIFT - 10
    return max(kbytes, recommended)


def empty_upper_zeroed(cfg: KernelConfig) -> bool:
    """Does cfg's kernel predate eae116d1f044 (v6.14)?"""
    return cfg.version < parse_version("v6.14")


def setup_zones(cfg: KernelConfig) -> tuple[int, list[ZoneParams]]:
    """Every zone's boot-time values for ``cfg``, and the min_free_kbytes in force.

    :return: ``(min_free_kbytes, [ZoneParams for DMA, DMA32, Normal, Movable, Device])``;
        unpopulated zones have zero pages.
    """
    spans: list[ZoneSpan | None] = [None] * MAX_NR_ZONES
    for z in cfg.zone_layout():
        spans[z.idx] = z
    managed = [z.managed if z else 0 for z in spans]
    kbytes = _min_free_kbytes(cfg, managed)
    marks = zone_watermarks(managed, kbytes, cfg.watermark_scale_factor, cfg.other_nodes_lowmem)
    reserve = lowmem_reserves(managed, cfg.lowmem_reserve_ratio, empty_upper_zeroed(cfg))
    split = cfg.node_cpus or cfg.cpus          # nr_split_cpus: the CPUs of the zone's node
    zones = []
    for i in range(MAX_NR_ZONES):
        m, z = managed[i], spans[i] or ZoneSpan(i, 0, 0, 0, 0)
        cma = cfg.cma if cfg.cma and z.free_start <= (cfg.cma_base or 0) < z.free_end else 0
        batch = max(1, zone_batchsize(m))
        if cfg.percpu_pagelist_high_fraction:
            high_min = high_max = zone_highsize(m, marks[i][1], batch, split, cfg.percpu_pagelist_high_fraction)
        else:
            high_min = zone_highsize(m, marks[i][1], batch, split, 0)
            high_max = zone_highsize(m, marks[i][1], batch, split, MIN_PERCPU_PAGELIST_HIGH_FRACTION)
        zones.append(ZoneParams(i, ZONE_NAMES[i], z.start_pfn, z.spanned, z.present, m, z.free_start, cma, marks[i],
                                reserve[i], batch, high_min, high_max))
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
    managed, split = zone.managed - zone.cma_pages, cfg.node_cpus or cfg.cpus
    batch = max(1, zone_batchsize(managed))
    return (batch, zone_highsize(managed, 0, batch, split, 0),
            zone_highsize(managed, 0, batch, split, MIN_PERCPU_PAGELIST_HIGH_FRACTION))
