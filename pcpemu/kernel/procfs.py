"""Kernel-format text of /proc/buddyinfo, /proc/pagetypeinfo and /proc/zoneinfo,
written from a machine and read back from a real kernel's files.

Mirrors frag_show_print(), pagetypeinfo_show*() and zoneinfo_show_print() in
mm/vmstat.c byte for byte, for the fields pcpemu models, in the format of the
config's kernel version (KernelConfig.kernel).
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from ..errors import TraceFormatError

from .config import PAGE_SHIFT, PAGEBLOCK_NR_PAGES, PAGEBLOCK_ORDER, SECTION_NR_PAGES
from .gfp import MIGRATE_CMA, MIGRATE_ISOLATE, MIGRATE_TYPES, MIGRATETYPE_NAMES
from .kversion import parse_version
from .watermark import WMARK_HIGH, WMARK_LOW, WMARK_MIN, WMARK_PROMO

if TYPE_CHECKING:
    from ..machine import Machine

__all__ = ["buddyinfo", "pagetypeinfo", "read_pagetypeinfo", "read_zoneinfo", "zoneinfo"]

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
                   f"\n        min      {z.watermark[WMARK_MIN] + boost}"
                   f"\n        low      {z.watermark[WMARK_LOW] + boost}"
                   f"\n        high     {z.watermark[WMARK_HIGH] + boost}")
        if promo:
            out.append(f"\n        promo    {z.watermark[WMARK_PROMO] + boost}")
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


# ---------------------------------------------------------------------------------------
# /proc/zoneinfo


_ZONE_HEAD = re.compile(r"Node (\d+), zone\s+(\S+)")
_KEY_VALUE = re.compile(r"\s+([A-Za-z_][\w ]*?):?\s+(-?\d+)")
_PROTECTION = re.compile(r"\s+protection: \(([-\d, ]*)\)")
_CPU = re.compile(r"\s+cpu: (\d+)")
_ZONE_KEYS = {"pages free": "pages_free", "boost": "boost", "min": "min", "low": "low",
              "high": "high", "promo": "promo", "spanned": "spanned", "present": "present",
              "managed": "managed", "cma": "cma", "vm stats threshold": "stat_threshold",
              "node_unreclaimable": "node_unreclaimable", "start_pfn": "start_pfn"}


def read_zoneinfo(path_or_text: str | os.PathLike[str]) -> dict:
    """Parse a /proc/zoneinfo dump (zoneinfo_show_print() in mm/vmstat.c).

    :param path_or_text: the text itself (anything with a newline) or a path to it.
    :return: ``{"nr_cpus": int, "zones": [zone, ...]}``, the zones in file order, each a
        dict with ``node``, ``name``, ``pages_free``, ``boost``, ``min``, ``low``,
        ``high`` (and ``promo`` when printed), ``spanned``, ``present``, ``managed``,
        ``cma``, ``protection`` (a tuple), ``populated``, ``stats`` (the zone's ``nr_*``
        and NUMA counters), ``node_stats`` (the node's, in its first populated zone)
        and, for populated zones, ``start_pfn``, ``node_unreclaimable``,
        ``stat_threshold`` and ``pagesets``: one dict per CPU with ``cpu``, ``count``,
        ``high``, ``batch`` (and ``high_min``/``high_max`` when the kernel prints them).
    :raises TraceFormatError: for a line that cannot be read, naming its number.
    """
    text = os.fspath(path_or_text)
    if "\n" not in text:
        text = _read_proc_file(text, "zoneinfo")
    if "\0" in text:
        raise TraceFormatError(f"zoneinfo line {text[:text.index(chr(0))].count(chr(10)) + 1}: a NUL byte; "
                               "not /proc/zoneinfo text")
    zones: list[dict] = []
    zone: dict | None = None
    pcp: dict | None = None
    counters: dict = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = _ZONE_HEAD.match(line)
        if m:
            zone = {"node": int(m.group(1)), "name": m.group(2), "stats": {},
                    "pagesets": [], "populated": False}
            zones.append(zone)
            pcp = None
            counters = zone["stats"]
            continue
        if zone is None:
            raise TraceFormatError(f"zoneinfo line {lineno}: no 'Node N, zone' before {line!r}")
        stripped = line.strip()
        if stripped == "per-node stats":
            counters = zone["node_stats"] = {}
            continue
        if stripped == "pagesets":
            continue
        m = _PROTECTION.match(line)
        if m:
            values = [v.strip() for v in m.group(1).split(",") if v.strip()]
            if not all(v.isdigit() for v in values):
                raise TraceFormatError(f"zoneinfo line {lineno}: cannot read the protection values of {line!r}")
            zone["protection"] = tuple(int(v) for v in values)
            continue
        m = _CPU.match(line)
        if m:
            pcp = {"cpu": int(m.group(1))}
            zone["pagesets"].append(pcp)
            zone["populated"] = True
            continue
        m = _KEY_VALUE.fullmatch(line)
        if m is None:
            raise TraceFormatError(f"zoneinfo line {lineno}: cannot read {line!r}")
        key, value = m.group(1), int(m.group(2))
        indent = len(line) - len(line.lstrip())
        if pcp is not None and indent > 6 and key in ("count", "high", "batch", "high_min",
                                                       "high_max"):
            pcp[key] = value
        elif key in _ZONE_KEYS:
            zone[_ZONE_KEYS[key]] = value
            counters = zone["stats"]
        else:
            counters[key] = value
    cpus = {p["cpu"] for z in zones for p in z["pagesets"]}
    return {"nr_cpus": len(cpus), "zones": zones}


def _read_proc_file(path: str, what: str) -> str:
    # The text of a /proc dump saved to a file; a missing, unreadable or binary
    # file is a TraceFormatError naming it.
    if not path or "\0" in path:
        raise TraceFormatError(f"{what}: {path!r} is neither {what} text nor a file name")
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as exc:
        raise TraceFormatError(f"{what} {path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise TraceFormatError(f"{what} {path}: not a text file (not UTF-8)") from None
# ---------------------------------------------------------------------------------------
# /proc/pagetypeinfo


# Counts of 100000 and more print as ">100000" (a lower bound).
_PTI_FREE = re.compile(r"Node\s+(\d+), zone\s+(\S+), type\s+(\S+)((?:\s+>?\d+)+)\s*$")
_PTI_BLOCKS_HEAD = re.compile(r"Number of blocks type((?:\s+\S+)+)\s*$")
_PTI_BLOCKS = re.compile(r"Node (\d+), zone\s+(\S+)((?:\s+\d+)+)\s*$")


def read_pagetypeinfo(path_or_text: str | os.PathLike[str], node: int | None = None) -> dict:
    """Parse a /proc/pagetypeinfo dump (pagetypeinfo_showfree and
    pagetypeinfo_showblockcount in mm/vmstat.c).

    :param path_or_text: the text itself (anything with a newline) or a path to it.
    :param node: the node to read of a several-node dump.
    :return: ``{"pageblock_order": int, "zones": {name: {"free": {migratetype: [count by
        order]}, "blocks": {migratetype: count}}}}`` with the kernel's migratetype names.
    :raises TraceFormatError: for a dump without free counts or block counts (of the
        node), or of several nodes when none is named.
    """
    text = os.fspath(path_or_text)
    if "\n" not in text:
        text = _read_proc_file(text, "pagetypeinfo")
    zones: dict[str, dict] = {}
    block_types: list[str] | None = None
    order = None
    nodes: set[int] = set()
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.startswith("Page block order:"):
            order = int(line.split(":")[1])
            continue
        free, blocks = _PTI_FREE.match(line), _PTI_BLOCKS.match(line)
        m = free or blocks
        if m:
            nodes.add(int(m.group(1)))
            if node is not None and int(m.group(1)) != node:
                continue
        if free:
            zone = zones.setdefault(free.group(2), {"free": {}, "blocks": {}})
            zone["free"][free.group(3)] = [int(v.lstrip(">")) for v in free.group(4).split()]
            continue
        m = _PTI_BLOCKS_HEAD.match(line)
        if m:
            block_types = m.group(1).split()
            continue
        if blocks and block_types is not None:
            counts = [int(v) for v in blocks.group(3).split()]
            if len(counts) != len(block_types):
                raise TraceFormatError(f"pagetypeinfo line {lineno}: {len(counts)} block counts for "
                                       f"{len(block_types)} types")
            zones.setdefault(blocks.group(2), {"free": {}, "blocks": {}})["blocks"] = dict(zip(block_types, counts))
    if node is None and len(nodes) > 1:
        raise TraceFormatError(f"pagetypeinfo: nodes {', '.join(map(str, sorted(nodes)))}; name the node to read")
    if not zones or block_types is None:
        raise TraceFormatError("pagetypeinfo: no free counts or no 'Number of blocks type' table"
                               + (f" of node {node}" if node is not None else ""))
    return {"pageblock_order": order, "zones": zones}
