"""Kernel-format text of /proc/buddyinfo, /proc/pagetypeinfo and /proc/zoneinfo.

Mirrors frag_show_print(), pagetypeinfo_show*() and zoneinfo_show_print() in
mm/vmstat.c byte for byte, for the fields pcpemu models, in the format of the
config's kernel version (KernelConfig.kernel).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .config import PAGE_SHIFT, PAGEBLOCK_NR_PAGES, PAGEBLOCK_ORDER, SECTION_NR_PAGES
from .gfp import MIGRATE_CMA, MIGRATE_ISOLATE, MIGRATE_TYPES, MIGRATETYPE_NAMES
from .kversion import parse_version

if TYPE_CHECKING:
    from ..machine import Machine

__all__ = ["buddyinfo", "pagetypeinfo", "zoneinfo"]

NODE = 0
_PAGETYPEINFO_CAP = 100000


def buddyinfo(m: "Machine") -> str:
    """``/proc/buddyinfo``: free blocks per order of each populated zone (pcp pages excluded)."""
    lines = []
    for z in m.populated_zones:
        nr_free = m.zone_state(z.name)["nr_free"]
        lines.append(f"Node {NODE}, zone {z.name:>8} " + "".join(f"{n:6d} " for n in nr_free) + "\n")
    return "".join(lines)


def _migratetypes(m: "Machine") -> list[int]:
    # MIGRATE_CMA exists only with CONFIG_CMA, which a config has when it has CMA.
    return [mt for mt in range(MIGRATE_TYPES) if mt != MIGRATE_CMA or m.config.cma or m.config.pcp_cma]


def _online_pageblocks(z) -> list[int]:
    # pagetypeinfo_showblockcount_print(): one pfn a pageblock from start_pfn,
    # skipping those of absent memory sections (pfn_to_online_page).
    present_end = z.free_start + z.managed
    return [pfn >> PAGEBLOCK_ORDER for pfn in range(z.start_pfn, z.start_pfn + z.spanned, PAGEBLOCK_NR_PAGES)
            if pfn // SECTION_NR_PAGES * SECTION_NR_PAGES < present_end]


def pagetypeinfo(m: "Machine") -> str:
    """``/proc/pagetypeinfo``: free blocks per order and migratetype, and pageblocks per type."""
    types = _migratetypes(m)
    out = [f"Page block order: {PAGEBLOCK_ORDER}\n", f"Pages per block:  {PAGEBLOCK_NR_PAGES}\n", "\n"]
    out.append(f"{'Free pages count per migrate type at order':<43} " + "".join(f"{o:6d} " for o in range(11)) + "\n")
    for z in m.populated_zones:
        lists = m.zone_state(z.name)["free_lists"]
        for mt in types:
            cells = "".join((">" if n >= _PAGETYPEINFO_CAP else "") + f"{min(n, _PAGETYPEINFO_CAP):6d} "
                            for n in lists[:, mt])
            out.append(f"Node {NODE:4d}, zone {z.name:>8}, type {MIGRATETYPE_NAMES[mt]:>12} {cells}\n")
    out.append(f"\n{'Number of blocks type ':<23}" + "".join(f"{MIGRATETYPE_NAMES[mt]:>12} " for mt in types) + "\n")
    block_types = m.pageblock_types()
    for z in m.populated_zones:
        blocks = block_types[_online_pageblocks(z)]
        out.append(f"Node {NODE}, zone {z.name:>8} " + "".join(f"{int((blocks == mt).sum()):12d} " for mt in types) + "\n")
    return "".join(out)


def _fls(x: int) -> int:
    return x.bit_length()


def _stat_threshold(managed: int, cpus: int) -> int:
    # calculate_normal_threshold(): memory in 128 MiB units.
    mem = managed >> (27 - PAGE_SHIFT)
    return min(125, 2 * _fls(cpus) * (1 + _fls(mem)))


def zoneinfo(m: "Machine") -> str:
    """``/proc/zoneinfo`` for every zone the kernel was built with. Unlike the kernel,
    the per-node stats and the zone stats pcpemu does not model (LRU, NUMA events)
    are left out; the watermarks, sizes, protection, nr_free_pages,
    nr_free_pages_blocks (v6.15 on), nr_free_cma and pagesets are exact."""
    v = m.config.version
    promo = v >= parse_version("v6.0")            # c574bbe91703: the promo watermark
    free_blocks = v >= parse_version("v6.15")     # NR_FREE_PAGES_BLOCKS (defrag_mode series)
    # v6.13 ("mm: add pcp high_min high_max to proc zoneinfo") pads the pageset names.
    pageset = (("count", "high", "batch", "high_min", "high_max") if v >= parse_version("v6.13")
               else ("count", "high", "batch"))
    width = max(map(len, pageset)) + 2
    built = [z for z in m.zones if z.name in m.config.built_zones]
    out = []
    for z in built:
        st = m.zone_state(z.name) if z.managed else None
        boost = st["watermark_boost"] if st else 0
        free = st["nr_free_pages"] if st else 0
        out.append(f"Node {NODE}, zone {z.name:>8}")
        out.append(f"\n  pages free     {free}"
                   f"\n        boost    {boost}"
                   f"\n        min      {z.watermark[0] + boost}"
                   f"\n        low      {z.watermark[1] + boost}"
                   f"\n        high     {z.watermark[2] + boost}")
        if promo:
            out.append(f"\n        promo    {z.watermark[3] + boost}")
        out.append(f"\n        spanned  {z.spanned}"
                   f"\n        present  {z.present}"
                   f"\n        managed  {z.managed}"
                   f"\n        cma      {z.cma_pages}")
        out.append("\n        protection: (" + ", ".join(str(z.lowmem_reserve[b.idx]) for b in built) + ")")
        if not z.managed:
            out.append("\n")
            continue
        out.append(f"\n      {'nr_free_pages':<12} {free}")
        if free_blocks:
            lists = st["free_lists"]
            in_blocks = sum(int(lists[o, mt]) << o for o in range(PAGEBLOCK_ORDER, lists.shape[0])
                            for mt in range(MIGRATE_TYPES) if mt != MIGRATE_ISOLATE)
            out.append(f"\n      {'nr_free_pages_blocks':<12} {in_blocks}")
        out.append(f"\n      {'nr_free_cma':<12} {st['nr_free_cma']}")
        out.append("\n  pagesets")
        threshold = _stat_threshold(z.managed, m.config.cpus)
        for cpu in range(m.config.cpus):
            pcp = m.pcp_state(z.name, cpu)
            out.append(f"\n    cpu: {cpu}")
            out.extend(f"\n              {name + ':':<{width}}{pcp[name]}" for name in pageset)
            out.append(f"\n  vm stats threshold: {threshold}")
        out.append(f"\n  node_unreclaimable:  0\n  start_pfn:           {z.start_pfn}\n")
    return "".join(out)
