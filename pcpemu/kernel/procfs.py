"""Kernel-format text of /proc/buddyinfo, /proc/pagetypeinfo and /proc/zoneinfo.

Mirrors frag_show_print(), pagetypeinfo_show*() and zoneinfo_show_print() in
mm/vmstat.c (v6.10) byte for byte, for the fields pcpemu models.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .config import PAGE_SHIFT, PAGEBLOCK_NR_PAGES, PAGEBLOCK_ORDER
from .gfp import MIGRATE_TYPES, MIGRATETYPE_NAMES

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


def pagetypeinfo(m: "Machine") -> str:
    """``/proc/pagetypeinfo``: free blocks per order and migratetype, and pageblocks per type."""
    out = [f"Page block order: {PAGEBLOCK_ORDER}\n", f"Pages per block:  {PAGEBLOCK_NR_PAGES}\n", "\n"]
    out.append(f"{'Free pages count per migrate type at order':<43} " + "".join(f"{o:6d} " for o in range(11)) + "\n")
    for z in m.populated_zones:
        lists = m.zone_state(z.name)["free_lists"]
        for mt in range(MIGRATE_TYPES):
            cells = "".join((">" if n >= _PAGETYPEINFO_CAP else "") + f"{min(n, _PAGETYPEINFO_CAP):6d} "
                            for n in lists[:, mt])
            out.append(f"Node {NODE:4d}, zone {z.name:>8}, type {MIGRATETYPE_NAMES[mt]:>12} {cells}\n")
    out.append(f"\n{'Number of blocks type ':<23}" + "".join(f"{n:>12} " for n in MIGRATETYPE_NAMES) + "\n")
    types = m.pageblock_types()
    for z in m.populated_zones:
        blocks = types[z.start_pfn >> PAGEBLOCK_ORDER : (z.start_pfn + z.spanned - 1 >> PAGEBLOCK_ORDER) + 1]
        counts = [int((blocks == mt).sum()) for mt in range(MIGRATE_TYPES)]
        out.append(f"Node {NODE}, zone {z.name:>8} " + "".join(f"{c:12d} " for c in counts) + "\n")
    return "".join(out)


def _fls(x: int) -> int:
    return x.bit_length()


def _stat_threshold(managed: int, cpus: int) -> int:
    # calculate_normal_threshold(): memory in 128 MiB units.
    mem = managed >> (27 - PAGE_SHIFT)
    return min(125, 2 * _fls(cpus) * (1 + _fls(mem)))


def zoneinfo(m: "Machine") -> str:
    """``/proc/zoneinfo`` for every zone. Unlike the kernel, the per-node stats and
    the zone stats pcpemu does not model (LRU, NUMA events) are left out; the
    watermarks, sizes, protection, nr_free_pages, nr_free_cma and pagesets are exact."""
    out = []
    for z in m.zones:
        st = m.zone_state(z.name) if z.managed else None
        boost = st["watermark_boost"] if st else 0
        free = st["nr_free_pages"] if st else 0
        out.append(f"Node {NODE}, zone {z.name:>8}")
        out.append(f"\n  pages free     {free}"
                   f"\n        boost    {boost}"
                   f"\n        min      {z.watermark[0] + boost}"
                   f"\n        low      {z.watermark[1] + boost}"
                   f"\n        high     {z.watermark[2] + boost}"
                   f"\n        spanned  {z.spanned}"
                   f"\n        present  {z.managed}"
                   f"\n        managed  {z.managed}"
                   f"\n        cma      {z.cma_pages}")
        out.append("\n        protection: (" + ", ".join(str(r) for r in z.lowmem_reserve) + ")")
        if not z.managed:
            out.append("\n")
            continue
        out.append(f"\n      {'nr_free_pages':<12} {free}")
        out.append(f"\n      {'nr_free_cma':<12} {st['nr_free_cma']}")
        out.append("\n  pagesets")
        threshold = _stat_threshold(z.managed, m.config.cpus)
        for cpu in range(m.config.cpus):
            pcp = m.pcp_state(z.name, cpu)
            out.append(f"\n    cpu: {cpu}"
                       f"\n              count: {pcp['count']}"
                       f"\n              high:  {pcp['high']}"
                       f"\n              batch: {pcp['batch']}"
                       f"\n  vm stats threshold: {threshold}")
        out.append(f"\n  node_unreclaimable:  0\n  start_pfn:           {z.start_pfn}\n")
    return "".join(out)
