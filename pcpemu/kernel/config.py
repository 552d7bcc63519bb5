"""KernelConfig: the emulated machine and the kernel build it runs.

Memory, zones, CMA, CPUs, the pcp tunables and the THP-list policy, with the
kernel-version presets. Every field is checked when the config is made; an
error names the field and the range it allows.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Mapping

from ..errors import ConfigError
from .gfp import MAX_NR_ZONES, MIGRATE_PCPTYPES, ZONE_DMA, ZONE_DMA32, ZONE_NAMES, ZONE_NORMAL
from .kversion import NEWEST_VERSION, KernelVersion, default_thp_lists, parse_version, parse_version_key

__all__ = ["BUDDY_RULES", "DEFAULT_PRESET", "KernelConfig", "NOT_MODELLED", "PCP_POLICIES", "PRESETS",
           "RECLAIM_OUTCOMES", "RULE_CHANGES", "THP_LIST_POLICIES", "ReleaseRules", "ZoneSpan", "parse_size",
           "release_rules"]

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
MAX_PAGE_ORDER = 10
MAX_ORDER_NR_PAGES = 1 << MAX_PAGE_ORDER
PAGEBLOCK_ORDER = 9
PAGEBLOCK_NR_PAGES = 1 << PAGEBLOCK_ORDER
PAGE_ALLOC_COSTLY_ORDER = 3
HPAGE_PMD_ORDER = 9
#: Pages in one memory section (x86_64 SECTION_SIZE_BITS 27): the unit in which
#: memory is present or absent (pfn_to_online_page).
SECTION_NR_PAGES = 1 << (27 - PAGE_SHIFT)

#: THP-list policies, named after the kernels that had them.
THP_LIST_POLICIES = {
    # Linux kernel commit 44042b449872 ("mm/page_alloc: allow high-order pages to
    # be stored on the per-cpu lists") (in v5.14): one THP list per pcp type.
    "per-type": "v5.14..v5.19: one THP list per pcp migratetype",
    # Linux kernel commit 5d0a661d808f ("mm/page_alloc: use only one PCP list for
    # THP-sized allocations") (in v6.0).
    "single": "v6.0..v6.9: one THP list shared by every migratetype",
    # Linux kernel commit bf14ed81f571 ("mm/page_alloc: Separate THP PCP into
    # movable and non-movable categories") (in v6.10).
    "split": "v6.10 and later: a movable and a non-movable THP list",
    "none": "THP off: order 9 never on a pcp list",
}
_MTHP_POLICIES = ("per-type", "single", "split")

#: Buddy rules, named after the kernels that had them.
BUDDY_RULES = {
    # The freelist migratetype hygiene series (Johannes Weiner) merged in
    # v6.10-rc1: type adoption on cross-block merges, move_freepages_block
    # from a named old type, account_freepages in the list helpers, steals
    # that claim a block before moving its pages.
    "v6.10": "v6.10-rc1 and later: a free list holds only its pageblock type",
    "v6.9": "v6.6..v6.9: steals move free pages before claiming, pcp pages keep a cached type",
}

#: What the slow path's direct reclaim achieves: real machines hold page cache,
#: so reclaim makes progress; a machine without reclaimable pages never does.
RECLAIM_OUTCOMES = {
    "progress": "a failed retry after reclaim unreserves highatomic blocks, drains all pcp lists, retries once",
    "none": "no drain; should_reclaim_retry loops, then force-unreserves the highatomic reserve",
    "traced": "the traced kernel's, played from its trace (frees, drain_all_pages): the slow path fails after "
              "its retry at the min mark with no drain or unreserve of its own (capture replays)",
}

#: pcp policies: how the pcp lists get and give back their pages.
PCP_POLICIES = {
    "classic": "the kernel's pcp: refills and drains of single blocks under zone->lock",
    # Johannes Weiner's RFC "mm: page_alloc: pcp buddy allocator" (linux-mm,
    # April 2026), as pcpemu models it: the core's _pcp_buddy.pxi.
    "pcp_buddy": "the 2026 pcp buddy RFC: CPUs own whole pageblocks, frees go to the owner's pcp",
}

# Smallest machine: mobility grouping is disabled below
# pageblock_nr_pages * MIGRATE_TYPES pages (build_all_zonelists), which pcpemu
# does not model, so refuse such machines.
MIN_MEMORY_PAGES = 4096
MAX_MEMORY_PAGES = 1 << 28  # 1 TiB
DEFAULT_MEMORY_PAGES = 8 << 18  # 8 GiB
MAX_CPUS = 1024

_SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]i?B?|B|pages?)?\s*$", re.IGNORECASE)
_UNITS = {"": None, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(value: str | int, field: str) -> int:
    """A size in pages from ``"8G"``, ``"512M"``, ``"2048K"``, ``"4096 pages"`` or an int of pages.

    :raises ConfigError: for a malformed size or one that is not a whole number of pages.
    """
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ConfigError(f"{field}: expected a size like '8G' or a page count, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(f"{field}: a page count cannot be negative ({value})")
        return value
    m = _SIZE.match(value)
    if not m:
        raise ConfigError(f"{field}: cannot read size {value!r} (use e.g. '8G', '512M', '1024K' or pages)")
    number, unit = int(m.group(1)), (m.group(2) or "")
    if unit.lower().startswith("page") or unit == "":
        return number
    scale = _UNITS[unit[0].upper()]
    nbytes = number * scale
    if nbytes % PAGE_SIZE:
        raise ConfigError(f"{field}: {value!r} is not a whole number of 4 KiB pages")
    return nbytes >> PAGE_SHIFT


_GEOMETRY_KEYS = ("start_pfn", "spanned", "present", "managed")


def _zone_geometry(name: str, given: Mapping) -> dict[str, int]:
    # One zone as /proc/zoneinfo prints it: managed <= present <= spanned.
    if set(given) != set(_GEOMETRY_KEYS):
        raise ConfigError(f"zones[{name}]: expected the keys {', '.join(_GEOMETRY_KEYS)}, got {', '.join(map(str, given))}")
    g = {key: _check_range(f"zones[{name}][{key}]", given[key], 0, MAX_MEMORY_PAGES) for key in _GEOMETRY_KEYS}
    if not g["managed"] <= g["present"] <= g["spanned"]:
        raise ConfigError(f"zones[{name}]: managed {g['managed']} <= present {g['present']} <= spanned "
                          f"{g['spanned']} does not hold")
    return g


def _check_range(field: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{field}: expected an integer in {lo}..{hi}, got {value!r}")
    if not lo <= value <= hi:
        raise ConfigError(f"{field}: {value} is outside the allowed range {lo}..{hi}")
    return value


@dataclasses.dataclass(frozen=True)
class ZoneSpan:
    """Where a zone lies and which of its pfns the buddy allocator sees.

    The zone spans ``[start_pfn, start_pfn + spanned)``; ``present`` pages have a
    memmap and ``managed`` pages were freed to the buddy at boot. Where the other
    pages lie /proc/zoneinfo does not say; pcpemu follows x86_64: holes of whole
    memory sections sit at the top of the zone (the PCI hole below 4 GiB), the
    other pages the buddy never sees (memblock reservations, small holes) at its
    bottom (the first MiB of DMA, the kernel image at the start of DMA32). The
    managed pages are ``[free_start, free_end)``.
    """

    idx: int
    start_pfn: int
    spanned: int
    present: int
    managed: int

    @property
    def name(self) -> str:
        return ZONE_NAMES[self.idx]

    @property
    def end_pfn(self) -> int:
        return self.start_pfn + self.spanned

    @property
    def free_end(self) -> int:
        """End of the present pfns below the top hole, and of the managed ones."""
        top_hole = (self.spanned - self.present) // SECTION_NR_PAGES * SECTION_NR_PAGES
        return self.end_pfn - top_hole

    @property
    def free_start(self) -> int:
        return self.free_end - self.managed


@dataclasses.dataclass(frozen=True)
class KernelConfig:
    """One emulated NUMA node and the kernel build that runs on it.

    Sizes are in 4 KiB pages once the config is made; the constructor also takes
    strings such as ``"8G"``.

    :param memory: RAM of the node (default 8 GiB; with a zone mapping, where
        the last zone ends, and a memory given must be that).
    :param zones: ``"x86_64"`` (DMA below 16 MiB, DMA32 below 4 GiB, Normal above),
        ``"normal"`` (one Normal zone), or a mapping of zone name (DMA, DMA32, Normal,
        Movable) to either managed pages (the zones are then laid out one after the
        other, each starting on a MAX_ORDER_NR_PAGES boundary, with no holes) or,
        for every zone, a mapping with ``start_pfn``, ``spanned``, ``present`` and
        ``managed`` as ``/proc/zoneinfo`` prints them (see ZoneSpan).
    :param cma: size of the CMA area (whole pageblocks).
    :param cma_base: first pfn of the CMA area; default the top of memory, as a
        ``cma=`` reservation places it.
    :param min_free_kbytes: None derives it as the kernel does (with the THP
        recommendation when THP is on).
    :param thp_lists: the THP pcp-list policy, one of THP_LIST_POLICIES.
    :param pcp_cma: Android's common kernel: MIGRATE_CMA is a pcp migratetype with
        lists of its own.
    :param mthp_orders: further orders (4..8) kept on pcp lists, each with the list
        split it names (``"single"``, ``"split"`` or ``"per-type"``).
    :param pcp_policy: one of PCP_POLICIES (``"classic"`` or ``"pcp_buddy"``).
    :param cache_slice: each CPU's slice of the data cache (default 2 MiB); when it
        exceeds 3 * batch pages the pcp gets PCPF_FREE_HIGH_BATCH
        (zone_pcp_update_cacheinfo).
    :param buddy_rules: one of BUDDY_RULES.
    :param reclaim: one of RECLAIM_OUTCOMES, what direct reclaim achieves.
    :param lowmem_reserve_ratio: vm.lowmem_reserve_ratio, one per zone (DMA, DMA32,
        Normal, Movable, Device); 0 gives the zone no reserve.
    :param node_cpus: the CPUs of this node (cpumask_of_node), over which
        zone_highsize splits pcp high; None: all ``cpus`` (a one-node machine).
    :param other_nodes_lowmem: managed pages of the other nodes' zones below
        ZONE_MOVABLE: __setup_per_zone_wmarks shares min_free_kbytes over the low
        zones of every node, and calculate_min_free_kbytes counts them too.
    :param kernel: the kernel version whose rules pcpemu models where they differ
        from v6.10's (see PRESETS) and whose /proc formats it prints.
    :param later_changes: commits of RULE_CHANGES from after the newest modelled
        version that the machine follows too: a traced release past it runs
        ``kernel``'s structs with the later rules it has (release_rules).
    :param built_zones: the zones the kernel was built with (CONFIG_ZONE_DMA,
        CONFIG_ZONE_DMA32, CONFIG_ZONE_DEVICE), in /proc/zoneinfo order; empty ones
        are printed, and each has a column in ``protection:``.
    """

    memory: int = None  # type: ignore[assignment]   # None: 8 GiB, or the zones' end
    zones: Any = "x86_64"
    cma: int = 0
    cma_base: int | None = None
    cpus: int = 4
    min_free_kbytes: int | None = None
    watermark_scale_factor: int = 10
    watermark_boost_factor: int = 15000
    percpu_pagelist_high_fraction: int = 0
    pcp_batch_scale_max: int = 5
    thp: bool = True
    thp_lists: str = "split"
    pcp_cma: bool = False
    mthp_orders: Mapping[int, str] = dataclasses.field(default_factory=dict)
    numa: bool = True
    cacheline: int = 64
    cache_slice: int = 512
    buddy_rules: str = "v6.10"
    reclaim: str = "progress"
    lowmem_reserve_ratio: tuple = (256, 256, 32, 0, 0)
    node_cpus: int | None = None
    other_nodes_lowmem: int = 0
    kernel: str = "v6.10"
    later_changes: tuple = ()
    built_zones: tuple = ZONE_NAMES
    pcp_policy: str = "classic"
    name: str = "custom"

    def __post_init__(self) -> None:
        setter = object.__setattr__.__get__(self)
        given = self.memory is not None
        setter("memory", parse_size(self.memory, "memory") if given else DEFAULT_MEMORY_PAGES)
        _check_range("memory (pages)", self.memory, MIN_MEMORY_PAGES, MAX_MEMORY_PAGES)
        setter("cma", parse_size(self.cma, "cma"))
        setter("cache_slice", parse_size(self.cache_slice, "cache_slice"))
        _check_range("cpus", self.cpus, 1, MAX_CPUS)
        _check_range("watermark_scale_factor", self.watermark_scale_factor, 1, 3000)
        _check_range("watermark_boost_factor", self.watermark_boost_factor, 0, 1 << 30)
        _check_range("pcp_batch_scale_max", self.pcp_batch_scale_max, 0, 6)
        f = _check_range("percpu_pagelist_high_fraction", self.percpu_pagelist_high_fraction, 0, 1 << 31)
        if 0 < f < 8:
            raise ConfigError(
                f"percpu_pagelist_high_fraction: {f} is not allowed; use 0 (auto) or a value >= 8"
            )
        if self.cacheline not in (64, 128, 256):
            raise ConfigError(f"cacheline: {self.cacheline!r} is not one of 64, 128, 256")
        for flag in ("thp", "pcp_cma", "numa"):
            if not isinstance(getattr(self, flag), bool):
                raise ConfigError(f"{flag}: expected True or False, got {getattr(self, flag)!r}")
        for field, allowed in (("buddy_rules", BUDDY_RULES), ("reclaim", RECLAIM_OUTCOMES)):
            if getattr(self, field) not in allowed:
                raise ConfigError(f"{field}: {getattr(self, field)!r} is not one of {', '.join(allowed)}")
        if self.thp_lists not in THP_LIST_POLICIES:
            raise ConfigError(
                f"thp_lists: {self.thp_lists!r} is not one of {', '.join(THP_LIST_POLICIES)}"
            )
        if self.thp != (self.thp_lists != "none"):
            raise ConfigError(
                f"thp_lists: {self.thp_lists!r} contradicts thp={self.thp}; "
                "THP off goes with 'none', THP on with any other policy"
            )
        if self.pcp_policy not in PCP_POLICIES:
            raise ConfigError(f"pcp_policy: {self.pcp_policy!r} is not one of {', '.join(PCP_POLICIES)}")
        if self.pcp_policy == "pcp_buddy" and self.buddy_rules != "v6.10":
            # Its refill takes fragments off the free list of their pageblock's type.
            raise ConfigError("pcp_policy: pcp_buddy needs buddy_rules='v6.10' (a free list holds only its "
                              "pageblock's type)")
        mthp = dict(self.mthp_orders)
        for order, policy in mthp.items():
            _check_range("mthp_orders order", order, PAGE_ALLOC_COSTLY_ORDER + 1, PAGEBLOCK_ORDER - 1)
            if policy not in _MTHP_POLICIES:
                raise ConfigError(f"mthp_orders[{order}]: {policy!r} is not one of {', '.join(_MTHP_POLICIES)}")
        if mthp and not self.thp:
            raise ConfigError("mthp_orders: multi-size THP orders need thp=True")
        setter("mthp_orders", dict(sorted(mthp.items())))
        ratios = self.lowmem_reserve_ratio
        if not isinstance(ratios, (tuple, list)) or len(ratios) != MAX_NR_ZONES:
            raise ConfigError(f"lowmem_reserve_ratio: expected {MAX_NR_ZONES} ratios (DMA..Device), got {ratios!r}")
        setter("lowmem_reserve_ratio", tuple(_check_range("lowmem_reserve_ratio", r, 0, 1 << 31) for r in ratios))
        if self.node_cpus is not None:
            _check_range("node_cpus", self.node_cpus, 1, self.cpus)
        setter("other_nodes_lowmem", parse_size(self.other_nodes_lowmem, "other_nodes_lowmem"))
        setter("kernel", str(parse_version(self.kernel)))
        setter("later_changes", self._validate_later_changes(self.later_changes))
        built = tuple(self.built_zones) if isinstance(self.built_zones, (tuple, list)) else None
        if (built is None or any(z not in ZONE_NAMES for z in built) or built != tuple(sorted(built, key=ZONE_NAMES.index))
                or "Normal" not in built or "Movable" not in built or len(set(built)) != len(built)):
            raise ConfigError(f"built_zones: {self.built_zones!r} is not an ordered selection of "
                              f"{', '.join(ZONE_NAMES)} that includes Normal and Movable")
        setter("built_zones", built)
        setter("zones", self._validate_zones(self.zones))
        spans = self.zone_layout()
        for z in spans:
            if z.name not in built:
                raise ConfigError(f"zones: {z.name} has pages but is not in built_zones {built}")
        end = max(z.end_pfn for z in spans)
        if isinstance(self.zones, dict):
            # The zones give the memory; a memory given beside them must agree.
            if given and self.memory != end:
                raise ConfigError(f"memory: {self.memory} pages, but the zones {self.zones} end at pfn {end}; "
                                  "give one of them, or sizes that agree")
            _check_range("memory (pages) of the zones", end, MIN_MEMORY_PAGES, MAX_MEMORY_PAGES)
        setter("memory", end)
        self._validate_cma(spans)
        if self.min_free_kbytes is not None:
            _check_range("min_free_kbytes", self.min_free_kbytes, 0, self.memory * 4)

    def _validate_later_changes(self, commits: Any) -> tuple[str, ...]:
        if isinstance(commits, str) or not isinstance(commits, (tuple, list)):
            raise ConfigError(f"later_changes: expected a list of commits, got {commits!r}")
        known = {r.commit: r for r in RULE_CHANGES}
        for c in commits:
            if c not in known:
                raise ConfigError(f"later_changes: {c!r} is none of the rule changes pcpemu knows "
                                  f"({', '.join(known)})")
            if known[c].in_kernel(self.version):
                raise ConfigError(f"later_changes: kernel {self.kernel} already has {c} ({known[c].since})")
        return tuple(dict.fromkeys(commits))

    @staticmethod
    def _validate_zones(zones: Any) -> Any:
        if zones in ("x86_64", "normal"):
            return zones
        if not isinstance(zones, Mapping):
            raise ConfigError(f"zones: expected 'x86_64', 'normal' or a mapping of zone name to pages, got {zones!r}")
        out: dict[str, Any] = {}
        for name, pages in zones.items():
            if name not in ZONE_NAMES[:4]:
                raise ConfigError(f"zones: unknown zone {name!r} (pcpemu models DMA, DMA32, Normal and Movable)")
            out[name] = (_zone_geometry(name, pages) if isinstance(pages, Mapping) else _check_range(
                f"zones[{name}] (pages)", parse_size(pages, f"zones[{name}]"), 1, MAX_MEMORY_PAGES))
            managed = out[name]["managed"] if isinstance(out[name], dict) else out[name]
            if managed <= 0:
                raise ConfigError(f"zones[{name}]: a zone needs at least one managed page")
        if not out:
            raise ConfigError("zones: the mapping names no zone")
        if len({isinstance(v, dict) for v in out.values()}) > 1:
            raise ConfigError("zones: give every zone as a page count or every zone as a mapping with start_pfn, "
                              "spanned, present and managed, not a mix")
        return {name: out[name] for name in ZONE_NAMES if name in out}

    def zone_layout(self) -> list[ZoneSpan]:
        """Populated zones, lowest first.

        Zones given as page counts (and the ``"x86_64"``/``"normal"`` layouts) have
        no holes or reserved pages: managed == present == spanned.
        """
        if self.zones == "normal":
            return [ZoneSpan(ZONE_NORMAL, 0, self.memory, self.memory, self.memory)]
        if self.zones == "x86_64":
            bounds = ((ZONE_DMA, 0, 1 << 12), (ZONE_DMA32, 1 << 12, 1 << 20), (ZONE_NORMAL, 1 << 20, None))
            spans = []
            for idx, start, end in bounds:
                end = self.memory if end is None else min(end, self.memory)
                if end > start:
                    spans.append(ZoneSpan(idx, start, end - start, end - start, end - start))
            return spans
        spans, pfn = [], 0
        for name, pages in self.zones.items():
            if isinstance(pages, dict):
                spans.append(ZoneSpan(ZONE_NAMES.index(name), **pages))
                continue
            spans.append(ZoneSpan(ZONE_NAMES.index(name), pfn, pages, pages, pages))
            pfn = -(-(pfn + pages) // MAX_ORDER_NR_PAGES) * MAX_ORDER_NR_PAGES
        for low, high in zip(spans, spans[1:]):
            if high.start_pfn < low.end_pfn:
                raise ConfigError(f"zones: {high.name} starts at pfn {high.start_pfn:#x}, inside {low.name} "
                                  f"(which ends at {low.end_pfn:#x})")
            # The buddy merges within MAX_ORDER-aligned blocks; pcpemu keeps each
            # such block in one zone (page_is_buddy's zone check).
            if (low.free_end - 1) >> MAX_PAGE_ORDER == high.free_start >> MAX_PAGE_ORDER:
                raise ConfigError(f"zones: the managed pages of {low.name} and {high.name} share the "
                                  f"order-{MAX_PAGE_ORDER} block at pfn {high.free_start >> MAX_PAGE_ORDER << MAX_PAGE_ORDER:#x}; "
                                  "pcpemu needs zones to meet on an order-10 boundary")
        return spans

    def _validate_cma(self, spans: list[ZoneSpan]) -> None:
        if self.cma % PAGEBLOCK_NR_PAGES:
            raise ConfigError(f"cma: {self.cma} pages is not a whole number of {PAGEBLOCK_NR_PAGES}-page pageblocks")
        if self.cma == 0:
            if self.cma_base is not None:
                raise ConfigError("cma_base: given without a cma size")
            return
        top = spans[-1].free_end
        if self.cma > top:
            raise ConfigError(f"cma: {self.cma} pages do not fit in {top} pages of memory")
        base = self.cma_base if self.cma_base is not None else (top - self.cma) // PAGEBLOCK_NR_PAGES * PAGEBLOCK_NR_PAGES
        _check_range("cma_base", base, 0, top)
        if base % PAGEBLOCK_NR_PAGES:
            raise ConfigError(f"cma_base: pfn {base:#x} is not pageblock aligned ({PAGEBLOCK_NR_PAGES} pages)")
        for z in spans:
            if z.free_start <= base and base + self.cma <= z.free_end:
                object.__setattr__(self, "cma_base", base)
                return
        raise ConfigError(
            f"cma: [{base:#x}, {base + self.cma:#x}) does not lie inside the managed pages of one zone; "
            "the kernel requires a CMA area to be in a single zone"
        )

    @property
    def nr_zones(self) -> int:
        return MAX_NR_ZONES

    @property
    def version(self) -> KernelVersion:
        """The kernel version as pcpemu.kernel.kversion reads it."""
        return parse_version(self.kernel)

    @property
    def rule_changes(self) -> list["RuleChange"]:
        """The RULE_CHANGES this config's kernel has (a stable release: with the ones
        backported to its series by then), and its later_changes."""
        return [r for r in RULE_CHANGES if r.in_kernel(self.version) or r.commit in self.later_changes]

    @property
    def rule_flags(self) -> set[str]:
        """The core's rule flags (RuleChange.flag) of this config's rule changes."""
        return {r.flag for r in self.rule_changes if r.flag}

    @classmethod
    def from_zoneinfo(cls, zoneinfo: Any, preset: str | None = None, node: int | None = None,
                      **overrides: Any) -> "KernelConfig":
        """The machine a real ``/proc/zoneinfo`` describes (pcpemu.kernel.zoneinfo.config_fields).

        :param zoneinfo: a path, the text, or what pcpemu.kernel.procfs.read_zoneinfo returns.
        :param preset: the kernel rules (default DEFAULT_PRESET).
        :param node: which NUMA node of a several-node dump to emulate.
        :param overrides: any field, e.g. ``cma=``, ``min_free_kbytes=``.
        """
        from .zoneinfo import config_fields

        preset = DEFAULT_PRESET if preset is None else preset
        return cls.preset(preset, **config_fields(zoneinfo, preset, overrides, node))

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "KernelConfig":
        """A config as the named kernel has it, with any field overridden.

        :param name: one of PRESETS (``"v6.6"``, ``"v6.9"``, ``"v6.10-rc5"``, ``"v6.10"``, ``"v5.14"``,
            ``"android"``, ``"nothp"``).
        """
        if name not in PRESETS:
            raise ConfigError(f"preset: unknown preset {name!r}; known: {', '.join(PRESETS)}")
        fields = dict(PRESETS[name])
        fields.update(overrides)
        fields.setdefault("name", name)
        return cls(**fields)

    def not_modelled(self) -> tuple[str, ...]:
        """The rules of the named kernel that this config does not model."""
        return NOT_MODELLED["*"] + NOT_MODELLED.get(self.name, ())

    def replace(self, **changes: Any) -> "KernelConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict:
        """The config as plain JSON-able values."""
        d = dataclasses.asdict(self)
        d["mthp_orders"] = {str(k): v for k, v in self.mthp_orders.items()}
        d["built_zones"] = list(self.built_zones)
        d["lowmem_reserve_ratio"] = list(self.lowmem_reserve_ratio)
        return d


def parse_zones(spec: str, what: str = "zones") -> Any:
    """KernelConfig.zones from its command-line form: ``x86_64``, ``normal``,
    or managed pages per zone as ``DMA=3840,DMA32=N,Normal=N``.

    :param what: the option the message names.

    :raises ConfigError: for a list item without ``=``.
    """
    if spec in ("x86_64", "normal"):
        return spec
    pairs = [item.partition("=") for item in spec.split(",")]
    if any(not sep for _, sep, _ in pairs):
        raise ConfigError(f"{what}: cannot read {spec!r}; use e.g. DMA=3840,Normal=163840")
    return {name.strip(): pages.strip() for name, _, pages in pairs}


#: THP-list policy -> the preset of the kernel that has it ("android": the
#: split lists plus CMA pcp lists of their own). The one table: the report,
#: the seed-bug scenario and the contention runs each take the policies they
#: support from it.
POLICY_PRESETS: dict[str, str] = {"single": "v6.10-rc5", "split": "v6.10", "per-type": "v5.14", "none": "nothp",
                                  "android": "android"}

@dataclasses.dataclass(frozen=True)
class RuleChange:
    """A change after v6.10 to a rule pcpemu models, and how pcpemu follows it."""

    since: str       # first release with the change
    commit: str      # mainline commit (12 hex digits) or, when not found, the subject
    change: str
    modelled: str    # how pcpemu follows it; "" when it does not
    flag: str = ""   # the name of the core's rule flag that switches it on (see pcpemu.machine)
    backports: tuple[str, ...] = ()    # the first stable release of each older series that has it

    def in_kernel(self, v: KernelVersion) -> bool:
        """Whether kernel v has the change: from ``since`` on (which may be past the
        newest version pcpemu models), or from a backport in v's series."""
        return v.key >= parse_version_key(self.since) or any(
            b.major_minor == v.major_minor and v >= b for b in map(parse_version, self.backports))


#: The kernel changes after v6.10 to the buddy, the pcp lists, the watermarks,
#: lowmem_reserve and the /proc formats: those up to v6.18, and later ones that
#: 6.18.y carries or that a release past v6.18 has without them (release_rules
#: names those it cannot apply). A config follows each whose ``since`` is at or below its
#: ``kernel``, or that its stable series got by then (``backports``); the core's
#: rule flags are named in pcpemu.machine.
RULE_CHANGES: tuple[RuleChange, ...] = (
    RuleChange("v6.11", "66eca1021a42", "drain_pages_zone re-reads pcp->count under the lock before each "
               "chunk of batch << CONFIG_PCP_BATCH_SCALE_MAX (the chunks came in v6.10, 55f77df7d715; "
               "also in 6.10.3)", "every preset (nothing changes a pcp between the chunks of one drain)"),
    RuleChange("v6.12", "c928807f6f6b", "the watermark check holds back only the free pages of highatomic "
               "blocks (zone->nr_free_highatomic), not the whole highatomic reserve",
               "nr_free_highatomic kept in account_freepages; used by __zone_watermark_unusable_free",
               "free_highatomic"),
    RuleChange("v6.12", "281dd25c1a01", "rmqueue_buddy lets atomic (ALLOC_NON_BLOCK) requests take a "
               "highatomic block when all else failed, as it let ALLOC_OOM ones (also in 6.11.11)",
               "rmqueue_buddy", "highatomic_non_block", backports=("6.11.11",)),
    RuleChange("v6.13", "mm: add pcp high_min high_max to proc zoneinfo",
               "zoneinfo pagesets print count/high/batch/high_min/high_max, names padded to one width",
               "procfs.zoneinfo"),
    RuleChange("v6.14", "eae116d1f044", "revert of 907ec5fca3dc: lowmem_reserve of a zone is no longer zeroed "
               "for empty upper zones", "watermark.setup_zones"),
    RuleChange("v6.15", "c2f6ea38fc", "__rmqueue_fallback split in two: claim a whole block (largest order "
               "first, down to the orders allowed to claim), else steal the smallest block of another type "
               "without claiming, for every migratetype; the watermark boost comes with claim attempts only",
               "__rmqueue_claim, try_to_claim_block, __rmqueue_steal", "claim_steal", backports=("6.14.7",)),
    RuleChange("v6.15", "90abee6d7895", "rmqueue_bulk remembers which fallback mode (normal, CMA, claim, "
               "steal) served the last page of a refill and starts the next page there",
               "enum rmqueue_mode carried through rmqueue_bulk", "claim_steal", backports=("6.14.7",)),
    RuleChange("v6.15", "a211c6550efc",
               "NR_FREE_PAGES_BLOCKS: free pages in blocks of pageblock order or more, printed as "
               "nr_free_pages_blocks", "procfs.zoneinfo (counted from the free lists)"),
    RuleChange("v6.15", "mm: page_alloc: defrag_mode", "vm.defrag_mode sysctl (default 0)",
               ""),
    RuleChange("v6.16", "c544a952ba61", "free_high needs free_count >= batch + high_min / 2 (was batch)",
               "free_frozen_page_commit", "free_high_min"),
    RuleChange("v6.19", "fc4b909c368f", "decay_pcp_high drains count - high in free_pcppages_bulk calls of "
               "pcp->batch pages each; every call starts at the first list and may end a block past its "
               "share, so a drain reaching the high-order lists frees more pages than count - high "
               "(in 6.18.y from 6.18.7 and 6.12.y from 6.12.67, with 0acc67c4030c, as a dependency of "
               "038a102535eb)", "decay_pcp_high", "decay_batched", backports=("6.18.7", "6.12.67")),
    RuleChange("v6.19", "91e691296646", "free_frozen_page_commit frees nr_pcp_free's pages in free_pcppages_bulk "
               "calls of pcp->batch, each up to a block past its share, retaking the pcp lock between calls and "
               "stopping early when it cannot or the task moved CPU (6.18.y and 6.12.y did not take it: their "
               "free drains are one call)", "free_frozen_page_commit (free_pcp_drain)", "free_batched"),
)

#: Kernel-version presets: each sets the THP lists and the buddy rules of the
#: kernel it names, and ``kernel``, the version whose RULE_CHANGES and /proc
#: formats apply. v6.10-rc5 stands for bf14ed81f571's parent: v6.10's rules with
#: one THP list, the exact A/B of that commit against v6.10.
PRESETS: dict[str, dict[str, Any]] = {
    "v5.14": {"thp_lists": "per-type", "buddy_rules": "v6.9", "kernel": "v5.14"},
    "v6.6": {"thp_lists": "single", "buddy_rules": "v6.9", "kernel": "v6.6"},
    "v6.9": {"thp_lists": "single", "buddy_rules": "v6.9", "kernel": "v6.9"},
    "v6.10-rc5": {"thp_lists": "single", "kernel": "v6.10-rc5"},
    "v6.10": {"thp_lists": "split", "kernel": "v6.10"},
    "v6.18": {"thp_lists": "split", "kernel": "v6.18"},
    "android": {"thp_lists": "split", "pcp_cma": True},
    "nothp": {"thp": False, "thp_lists": "none"},
}

#: The preset from_zoneinfo and ``pcpemu replay`` use when none is named: the
#: kernel real captures come from. A bare KernelConfig() keeps the v6.10 rules.
DEFAULT_PRESET = "v6.18"

_PRE_V6_10 = (
    "page isolation (cma_alloc) splits free buddies the v6.10 way (move_freepages_block_isolate), "
    "not with v6.9's isolate_single_pageblock",
    "drain_pages_zone frees in chunks of batch << 5 re-reading pcp->count (v6.10, v6.10.3); "
    "before v6.10 it freed the whole count at once",
)
_PRE_V6_7 = (
    "pcp->high is auto-tuned between high_min and high_max with free_count, alloc_factor and "
    "decay_pcp_high, which came in v6.7; this kernel had a fixed pcp->high and free_factor",
)

#: What each preset does not model; "*" applies to every config.
NOT_MODELLED: dict[str, tuple[str, ...]] = {
    "*": (
        "no page reclaim, compaction or OOM killer: with reclaim='progress' a request fails after "
        "its drained retry, where the kernel would keep reclaiming",
        "kswapd reclaims nothing: it runs synchronously at the wake, takes back watermark boosts and, "
        "with reclaim='none', gives up after MAX_RECLAIM_RETRIES runs as the kernel's does",
        "no __GFP_MEMALLOC/PF_MEMALLOC reserves; __GFP_NOFAIL requests can fail",
        "one node: of a several-node machine, the other nodes count only through their lowmem share "
        "of min_free_kbytes; where its reserved pages and holes lie the zoneinfo does not say "
        "(ZoneSpan places them)",
        "the CMA area is released at boot by CPU 0, with every CPU online",
        "alloc_pages_bulk (OP_ALLOC_BULK) takes one page per op: a replay plays only the bulk allocations "
        "of pages the trace later frees (the path traces nothing); pages it took and kept are untraced",
        "memory comes into a zone at run time (online_pages, on-demand struct-page init) only through "
        "Machine.grow_zone, which a replay calls where the trace shows the new blocks freed",
        "memory leaving a zone (offline_pages, which also runs the zone's pcps at high 0, batch 1: "
        "zone_pcp_disable) and CPU hotplug (zone_pcp_update recomputes every pcp's high_min and high_max "
        "for the CPUs online) are not modelled",
    ),
    "v5.14": _PRE_V6_7 + _PRE_V6_10 + (
        "buddy rules are v6.9's, not checked against v5.14's own source (its cross-pageblock "
        "merge test predates migratetype_is_mergeable)",
    ),
    "v6.6": _PRE_V6_7 + _PRE_V6_10 + (
        "v6.6.0: 6.6.37 and later carry bf14ed81f571 (thp_lists='split')",
    ),
    "v6.9": _PRE_V6_10 + (
        "v6.9.0: 6.9.8 and later carry bf14ed81f571 (thp_lists='split')",
    ),
    "v6.10-rc5": (
        "drain_pages_zone re-reads pcp->count under the lock, a v6.10.3 fix",
    ),
    "v6.10": (
        "drain_pages_zone re-reads pcp->count under the lock, a v6.10.3 fix",
    ),
    "v6.18": (
        "vm.defrag_mode (v6.15) is taken as 0, its default",
        "alloc_pages_nolock/free_pages_nolock (v6.15) have no caller in pcpemu",
        "page isolation as a pageblock bit of its own (v6.17) is modelled as v6.10's MIGRATE_ISOLATE type",
    ),
    "android": (
        "an Android common kernel only in its CMA pcp lists; vendor hooks and other ACK changes "
        "are not modelled",
    ),
    "nothp": (),
}


@dataclasses.dataclass(frozen=True)
class ReleaseRules:
    """The rules pcpemu follows for a traced kernel's release (:func:`release_rules`)."""

    preset: str
    overrides: dict[str, Any]     # fields set on the preset's config
    note: str                     # what the choice leaves out; "" when nothing


_RELEASE_NUMBER = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


def release_rules(release: str) -> ReleaseRules:
    """The preset, and the fields set on it, that follow a kernel release as
    ``uname -r`` prints it (an -rc reads as its release):

    - v6.10 and later: the v6.18 preset with ``kernel`` set to the release, so
      that only the RULE_CHANGES the release has apply (stable backports included);
      past v6.18, the v6.18 rules with the later changes it models, at the 6.18.y
      release that carries them (:func:`_past_newest`);
    - v6.0..v6.9: the v6.9 or v6.6 preset (v6.0..v6.5 take v6.6's, the nearest),
      with two THP lists where a stable release carries bf14ed81f571
      (kversion.SPLIT_THP_BACKPORTS);
    - v5.14..v5.19: the v5.14 preset.

    :raises ConfigError: for a release it cannot read, or older than v5.14.
    """
    m = _RELEASE_NUMBER.match(release)
    if m is None:
        raise ConfigError(f"cannot read the kernel version of release {release!r}; give --preset")
    major, minor, sub = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
    if (major, minor) > parse_version(NEWEST_VERSION).major_minor:
        return _past_newest(release, (major, minor, sub))
    if (major, minor) < (5, 14):
        raise ConfigError(f"no preset for kernel {release}; the oldest is v5.14: give --preset")
    v = parse_version(f"{major}.{minor}" + (f".{sub}" if sub else ""))
    if v.major_minor >= (6, 10):
        return _rules_at(NEWEST_VERSION, v, f"the rule changes after {v} are left out")
    if v.major_minor < (6, 0):
        return _rules_at("v5.14", v, f"{v}'s differences from v5.14 are not modelled")
    rules = _rules_at("v6.9" if v.major_minor >= (6, 9) else "v6.6", v,
                      f"the nearest; {v}'s differences from v6.6 are not modelled")
    if default_thp_lists(v, MIGRATE_PCPTYPES) != 2:
        return rules
    return ReleaseRules(rules.preset, {**rules.overrides, "thp_lists": "split"}, "; ".join(
        filter(None, (rules.note, f"two THP lists: {v} carries bf14ed81f571 (a stable backport)"))))


def _past_newest(release: str, number: tuple[int, int, int]) -> ReleaseRules:
    # A release past the newest modelled version gets the newest preset's structs and
    # rules, run at the newest series' stable release that carries the later
    # RULE_CHANGES it can (a 6.19 kernel: v6.18 at 6.18.7, which has v6.19's
    # fc4b909c368f), with the other later changes pcpemu models on top (later_changes).
    newest = parse_version(NEWEST_VERSION)
    key = parse_version_key("v{}.{}.{}".format(*number))
    later = [r for r in RULE_CHANGES if newest.key < parse_version_key(r.since) <= key]
    # Each later change's first release in the newest series, if it has one.
    in_series = {r.commit: [v for v in map(parse_version, r.backports) if v.major_minor == newest.major_minor]
                 for r in later}
    carried = [r for r in later if in_series[r.commit]]
    on_top = [r.commit for r in later if not in_series[r.commit] and r.flag]
    missing = [r.commit for r in later if not in_series[r.commit] and not r.flag]
    overrides: dict[str, Any] = {"later_changes": tuple(on_top)} if on_top else {}
    parts = [f"kernel {release} is newer than {NEWEST_VERSION}, the newest whose structs and rules pcpemu models"]
    if carried:
        at = max(v for r in carried for v in in_series[r.commit])
        overrides["kernel"] = str(at)
        parts.append(f"run at {at}, which carries the later changes {', '.join(r.commit for r in carried)}")
    if on_top:
        parts.append(f"with the later changes {', '.join(on_top)} applied")
    if missing:
        parts.append(f"not applied: {', '.join(missing)}")
    return ReleaseRules(NEWEST_VERSION, overrides, "; ".join(parts) + "; its other changes are not modelled")


def _rules_at(preset: str, v: KernelVersion, left_out: str) -> ReleaseRules:
    # The preset's rules as of kernel v: its ``kernel`` set to v outside the preset's
    # own series, where left_out says what that leaves out, and within it where v is
    # a stable release carrying backported RULE_CHANGES.
    own = parse_version(PRESETS[preset]["kernel"])
    backported = ", ".join(r.commit for r in RULE_CHANGES if r.in_kernel(v) and v.key < parse_version_key(r.since))
    carries = f", with the stable backports pcpemu models ({backported})" if backported else ""
    if v.major_minor != own.major_minor:
        return ReleaseRules(preset, {"kernel": str(v)}, f"the {preset} preset at kernel {v}{carries}: "
                            f"{'otherwise ' if backported else ''}{left_out}")
    if not backported:
        return ReleaseRules(preset, {}, "")
    return ReleaseRules(preset, {"kernel": str(v)}, f"the {preset} preset at kernel {v}{carries}; its other "
                        "stable changes are not modelled")
