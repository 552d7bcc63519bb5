"""The machine a real /proc/zoneinfo describes (KernelConfig.from_zoneinfo).

A dump gives each zone's start_pfn, spanned, present and managed pages, the
CPUs (one pageset per online CPU), the CMA pages, and the boot values the
kernel derived: watermarks, protection, pcp batch/high_min/high_max. The zones
and CPUs are taken as printed; min_free_kbytes, watermark_scale_factor,
percpu_pagelist_high_fraction and lowmem_reserve_ratio are derived as the
preset's kernel does and, where the dump says otherwise (a sysctl was set), the
values that reproduce it are chosen.
:func:`static_differences` lists every printed boot value the config does not
reproduce.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from ..errors import ConfigError
from .config import PAGEBLOCK_NR_PAGES, PAGE_SHIFT, PRESETS, KernelConfig, ZoneSpan
from .procfs import read_zoneinfo
from .gfp import MAX_NR_ZONES, ZONE_MOVABLE, ZONE_NAMES
from .watermark import (WMARK_HIGH, WMARK_LOW, WMARK_MIN, WMARK_PROMO, empty_upper_zeroed, lowmem_reserves,
                        setup_zones, zone_watermarks)

__all__ = ["config_fields", "node_zoneinfo", "static_differences"]

_MAX_WATERMARK_SCALE_FACTOR = 3000


def _read(zoneinfo: Any) -> dict:
    if isinstance(zoneinfo, dict):
        return zoneinfo
    if isinstance(zoneinfo, os.PathLike) or (isinstance(zoneinfo, str) and "\n" not in zoneinfo):
        if not os.path.isfile(zoneinfo):
            raise ConfigError(f"zoneinfo: {os.fspath(zoneinfo)!r} is not a readable file")
    return read_zoneinfo(zoneinfo)


def node_zoneinfo(info: dict, node: int | None) -> dict:
    """What read_zoneinfo returned, with only the zones of one node (None: the dump
    must have one node).

    :raises ConfigError: for a node the dump does not have, or none named of several.
    """
    nodes = sorted({z["node"] for z in info["zones"]})
    if node is None and len(nodes) > 1:
        raise ConfigError(f"zoneinfo: nodes {', '.join(map(str, nodes))}; pcpemu emulates one NUMA node "
                          "(name it: node=N, --node N)")
    if node is not None and node not in nodes:
        raise ConfigError(f"zoneinfo: no node {node}; the dump has nodes {', '.join(map(str, nodes))}")
    return info if node is None else {**info, "zones": [z for z in info["zones"] if z["node"] == node]}


def _zones(info: dict, node: int | None) -> list[dict]:
    # The node's zones in file order, checked to be a 64-bit node pcpemu can build.
    if not info["zones"]:
        raise ConfigError("zoneinfo: no 'Node N, zone' line")
    zones = node_zoneinfo(info, node)["zones"]
    for z in zones:
        if z["name"] not in ZONE_NAMES:
            raise ConfigError(f"zoneinfo: zone {z['name']} is not one of {', '.join(ZONE_NAMES)} "
                              "(pcpemu models 64-bit kernels)")
        for key in ("spanned", "present", "managed"):
            if key not in z:
                raise ConfigError(f"zoneinfo: zone {z['name']} has no '{key}' line")
        if z["present"] and not z["managed"]:
            raise ConfigError(f"zoneinfo: zone {z['name']} has {z['present']} present pages but none managed; "
                              "pcpemu cannot build a populated zone the buddy never saw")
        if z["name"] == "Device" and z["managed"]:
            raise ConfigError("zoneinfo: zone Device has managed pages; pcpemu does not model ZONE_DEVICE memory")
    return zones


def _cpus(zones: list[dict]) -> int:
    sets = {tuple(sorted(p["cpu"] for p in z["pagesets"])) for z in zones if z["managed"]}
    if not sets or not next(iter(sets)):
        raise ConfigError("zoneinfo: no populated zone with pagesets")
    if len(sets) > 1:
        raise ConfigError("zoneinfo: the populated zones list different CPUs in their pagesets")
    return len(next(iter(sets)))


def _cma(populated: list[dict], spans: dict[str, ZoneSpan]) -> dict[str, int]:
    with_cma = [z for z in populated if z.get("cma")]
    if not with_cma:
        return {}
    if len(with_cma) > 1:
        raise ConfigError("zoneinfo: CMA pages in zones " + ", ".join(z["name"] for z in with_cma)
                          + "; pcpemu models one CMA area (give cma= and cma_base=)")
    z = with_cma[0]
    span = spans[z["name"]]
    # The area's place is not printed: put it at the top of the zone's managed pages.
    return {"cma": z["cma"], "cma_base": (span.free_end - z["cma"]) // PAGEBLOCK_NR_PAGES * PAGEBLOCK_NR_PAGES}


def _static_min(z: dict, key: str) -> int | None:
    # The printed watermarks include the boost of the moment.
    return None if key not in z else z[key] - z.get("boost", 0)


def _managed_by_index(zones: list[dict]) -> list[int]:
    managed = [0] * MAX_NR_ZONES
    for z in zones:
        managed[ZONE_NAMES.index(z["name"])] = z["managed"]
    return managed


def _other_lowmem(info: dict, node: int | None) -> int:
    # The other nodes' managed pages below ZONE_MOVABLE (lowmem_pages).
    return sum(z.get("managed", 0) for z in info["zones"] if node is not None and z["node"] != node
               and z["name"] in ZONE_NAMES[:ZONE_MOVABLE])


def _kbytes_for_mins(zones: list[dict], managed: list[int], scale: int, other: int) -> int | None:
    # Each zone's min is pages_min * managed / lowmem (__setup_per_zone_wmarks),
    # so pages_min lies just above the sum of the mins: the first min_free_kbytes
    # that gives every printed min exactly.
    want = {ZONE_NAMES.index(z["name"]): _static_min(z, "min") for z in zones if z["managed"]}
    if None in want.values():
        return None
    # ZONE_MOVABLE's min is its own (a clamp of managed / 1024), not a share.
    mins = sum(v for i, v in want.items() if i != ZONE_MOVABLE)
    # This node's zones get the share lowmem / (lowmem + other) of pages_min,
    # each rounded down.
    lowmem = max(sum(m for i, m in enumerate(managed) if i != ZONE_MOVABLE), 1)
    first, last = mins * (lowmem + other) // lowmem, (mins + len(want) + 1) * (lowmem + other) // lowmem + 1
    for kbytes in range(first << (PAGE_SHIFT - 10), last << (PAGE_SHIFT - 10)):
        marks = zone_watermarks(managed, kbytes, scale, other)
        if all(marks[i][0] == v for i, v in want.items()):
            return kbytes
    return None


def _scale_for_lows(zones: list[dict], managed: list[int], kbytes: int, other: int) -> int | None:
    want = {ZONE_NAMES.index(z["name"]): _static_min(z, "low") for z in zones if z["managed"]}
    if None in want.values():
        return None
    for scale in range(1, _MAX_WATERMARK_SCALE_FACTOR + 1):
        marks = zone_watermarks(managed, kbytes, scale, other)
        if all(marks[i][1] == v for i, v in want.items()):
            return scale
    return None


def config_fields(zoneinfo: Any, preset: str, overrides: Mapping[str, Any], node: int | None = None) -> dict[str, Any]:
    """The KernelConfig fields (besides the preset's) of the machine a dump describes.

    :param zoneinfo: a path, the text, or what pcpemu.kernel.procfs.read_zoneinfo returns.
    :param preset: the preset whose rules derive min_free_kbytes and the rest.
    :param overrides: fields the caller gives; they win over what the dump says.
    :param node: the node to emulate of a several-node dump; the other nodes give
        their lowmem to the watermark shares, and node_cpus is found from the pcp highs.
    :raises ConfigError: for a dump pcpemu cannot build (several nodes, a 32-bit
        zone, no pagesets, CMA in more than one zone) or an unreadable file.
    """
    if preset not in PRESETS:
        raise ConfigError(f"preset: unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    info = _read(zoneinfo)
    zones = _zones(info, node)
    populated = [z for z in zones if z["managed"]]
    if not populated:
        raise ConfigError("zoneinfo: no zone has managed pages")
    geometry = {}
    for z in populated:
        if "start_pfn" not in z:
            raise ConfigError(f"zoneinfo: zone {z['name']} has no 'start_pfn' line")
        geometry[z["name"]] = {key: z[key] for key in ("start_pfn", "spanned", "present", "managed")}
    spans = {name: ZoneSpan(ZONE_NAMES.index(name), **g) for name, g in geometry.items()}
    fields: dict[str, Any] = {"zones": geometry, "cpus": _cpus(zones),
                              "built_zones": tuple(z["name"] for z in zones)}
    if _other_lowmem(info, node):
        fields["other_nodes_lowmem"] = _other_lowmem(info, node)
    if "cma" not in overrides:
        fields.update(_cma(populated, spans))
    fields.update(overrides)
    # Watermarks: keep the preset's derivation when it gives the printed values.
    cfg = KernelConfig.preset(preset, **fields)
    managed = _managed_by_index(zones)
    if "min_free_kbytes" not in overrides and _mismatches(cfg, zones, "min"):
        kbytes = _kbytes_for_mins(zones, managed, cfg.watermark_scale_factor, cfg.other_nodes_lowmem)
        if kbytes is not None:
            fields["min_free_kbytes"] = kbytes
            cfg = cfg.replace(min_free_kbytes=kbytes)
    if "watermark_scale_factor" not in overrides and _mismatches(cfg, zones, "low"):
        scale = _scale_for_lows(zones, managed, setup_zones(cfg)[0], cfg.other_nodes_lowmem)
        if scale is not None:
            fields["watermark_scale_factor"] = scale
            cfg = cfg.replace(watermark_scale_factor=scale)
    if "node_cpus" not in overrides and _mismatches(cfg, zones, "pcp high_min"):
        # nr_split_cpus is the node's CPUs; the pagesets list every online CPU.
        for n in range(1, cfg.cpus):
            if not _pcp_high_mismatch(cfg.replace(node_cpus=n), zones):
                fields["node_cpus"] = n
                cfg = cfg.replace(node_cpus=n)
                break
    if "percpu_pagelist_high_fraction" not in overrides and _mismatches(cfg, zones, "pcp high_min"):
        fraction = _fraction_for_highs(cfg, zones)
        if fraction is not None:
            fields["percpu_pagelist_high_fraction"] = fraction
    if "lowmem_reserve_ratio" not in overrides and _mismatches(cfg, zones, "protection"):
        ratios = _ratios_for_protection(cfg, zones)
        if ratios is not None:
            fields["lowmem_reserve_ratio"] = ratios
    return fields


def _pcp_high_mismatch(cfg: KernelConfig, zones: list[dict]) -> bool:
    return any(key.startswith("pcp high") for _, key, _, _ in _differences(cfg, zones))


def _ratios_for_protection(cfg: KernelConfig, zones: list[dict]) -> tuple[int, ...] | None:
    # vm.lowmem_reserve_ratio set: protection[j] of zone i is the managed pages of
    # the zones above it up to j, divided by its ratio. The first nonzero reserve
    # of a row points at its ratio; keep the one that gives the whole row.
    managed, zeroed = _managed_by_index(zones), empty_upper_zeroed(cfg)
    built = [ZONE_NAMES.index(name) for name in cfg.built_zones]
    ratios = list(cfg.lowmem_reserve_ratio)
    for z in zones:
        i, row = ZONE_NAMES.index(z["name"]), dict(zip(built, z.get("protection", ())))
        nonzero = [j for j in row if j > i and row[j]]
        if not nonzero:
            continue
        base = sum(managed[i + 1: nonzero[0] + 1]) // row[nonzero[0]]
        for r in range(max(base - 2, 1), base + 3):
            ratios[i] = r
            if all(lowmem_reserves(managed, tuple(ratios), zeroed)[i][j] == row[j] for j in row):
                break
        else:
            return None
    return tuple(ratios)


def _fraction_for_highs(cfg: KernelConfig, zones: list[dict]) -> int | None:
    # vm.percpu_pagelist_high_fraction set: high_min == high_max ==
    # max(managed / fraction / CPUs, 4 * batch) (zone_highsize). Try the
    # fractions each zone's printed high points at.
    candidates = set()
    for z in zones:
        highs = {p.get("high_min") for p in z["pagesets"]}
        if z["managed"] and len(highs) == 1 and None not in highs:
            high = highs.pop()
            base = z["managed"] // max(high * (cfg.node_cpus or cfg.cpus), 1)
            candidates.update(f for f in range(base - 2, base + 3) if f >= 8)
    for fraction in sorted(candidates):
        if not _pcp_high_mismatch(cfg.replace(percpu_pagelist_high_fraction=fraction), zones):
            return fraction
    return None


def _mismatches(cfg: KernelConfig, zones: list[dict], key: str) -> bool:
    # Does a populated zone's printed value differ from the config's?
    populated = [z for z in zones if z["managed"]]
    return any(k == key for _, k, _, _ in _differences(cfg, populated))


def static_differences(cfg: KernelConfig, zoneinfo: Any, node: int | None = None) -> list[str]:
    """Every boot value a dump prints that ``cfg`` does not reproduce, one line each.

    Compares start_pfn, spanned, present, managed, cma, min, low, high, promo
    (less the dump's boost), protection and each pageset's batch, high_min and
    high_max; an empty list means the config boots into exactly the printed
    static state.
    """
    zones = _zones(_read(zoneinfo), node)
    out = []
    for where, key, ours, printed in _differences(cfg, zones):
        out.append(f"{where}: {key} {ours}, the dump has {printed}")
    return out


def _differences(cfg: KernelConfig, zones: list[dict]) -> list[tuple[str, str, Any, Any]]:
    # (where, field, the config's value, the dump's value) for each static field.
    emulated = {z.name: z for z in setup_zones(cfg)[1]}
    built = [name for name in ZONE_NAMES if name in cfg.built_zones]
    out: list[tuple[str, str, Any, Any]] = []
    if [z["name"] for z in zones if z["name"] in built] != [z["name"] for z in zones]:
        out.append(("zones", "built", " ".join(built), " ".join(z["name"] for z in zones)))
    for z in zones:
        e, where = emulated[z["name"]], f"zone {z['name']}"
        values = {"spanned": e.spanned, "present": e.present, "managed": e.managed, "cma": e.cma_pages,
                  "min": e.watermark[WMARK_MIN], "low": e.watermark[WMARK_LOW], "high": e.watermark[WMARK_HIGH],
                  "promo": e.watermark[WMARK_PROMO]}
        if e.managed:
            values["start_pfn"] = e.start_pfn
        for key, value in values.items():
            printed = _static_min(z, key) if key in ("min", "low", "high", "promo") else z.get(key)
            if printed is not None and printed != value:
                out.append((where, key, value, printed))
        protection = tuple(e.lowmem_reserve[ZONE_NAMES.index(name)] for name in built)
        if "protection" in z and z["protection"] != protection:
            out.append((where, "protection", protection, z["protection"]))
        for key in ("batch", "high_min", "high_max"):
            printed = sorted({p[key] for p in z["pagesets"] if key in p})
            if printed and printed != [getattr(e, key)]:
                out.append((where, f"pcp {key}", getattr(e, key), printed[0] if len(printed) == 1 else printed))
    return out
