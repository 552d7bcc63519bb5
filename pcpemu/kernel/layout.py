"""Layout of ``struct per_cpu_pages`` (:linux:`include/linux/mmzone.h`) for any
kernel version, config and architecture, rendered the way pahole prints it.

The model is written from the C rules, not from a compiler: each member has a C
type whose size and alignment follow the architecture's ABI (ILP32 or LP64),
members are placed at the next offset aligned for their type, and the struct is
padded to its alignment (the L1 cacheline when the kernel marks it
``____cacheline_aligned_in_smp``). The tests check every offset and size
against gcc (``offsetof``/``sizeof``), against pahole's own rendering of the
compiled struct, and against the compiled emulator's C mirror.

Kernel history modelled (each a change to the struct or to ``NR_PCP_LISTS``):

- up to v5.13: ``count, high, batch, lists[MIGRATE_PCPTYPES]`` (order-0 only;
  the struct sat inside ``struct per_cpu_pageset``, not cacheline aligned).
- v5.14: Linux kernel commit 44042b449872 ("mm/page_alloc: allow high-order
  pages to be stored on the per-cpu lists") and the pageset split add
  ``short free_factor``, ``short expire`` (CONFIG_NUMA) and
  ``MIGRATE_PCPTYPES * (PAGE_ALLOC_COSTLY_ORDER + 1 + NR_PCP_THP)`` lists: one
  THP list per pcp type, 15 lists with THP. Still not cacheline aligned.
- v6.0: Mel Gorman's 2022 series adds ``spinlock_t lock`` first and marks the
  struct ``____cacheline_aligned_in_smp``; 5d0a661d808f ("mm/page_alloc: use
  only one PCP list for THP-sized allocations") makes it 12 + 1 lists.
- v6.7: Huang Ying's PCP high auto-tuning series: ``high_min``, ``high_max``,
  ``u8 flags``, ``u8 alloc_factor``, ``u8 expire``, ``short free_count``
  (``free_factor`` gone).
- v6.10-rc6: bf14ed81f571 ("mm/page_alloc: Separate THP PCP into movable and
  non-movable categories"): two THP lists, 12 + 2 lists. Backported on top of
  the older structs to 6.1.97, 6.6.37 and 6.9.8 (see ``SPLIT_THP_BACKPORTS``).
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Iterable, Mapping

from ..errors import ConfigError
from .kversion import NEWEST_VERSION, SPLIT_THP_BACKPORTS, KernelVersion, default_thp_lists, era, parse_version
from .pcplists import nr_policy_lists

__all__ = [
    "ARCHES",
    "Arch",
    "Field",
    "KernelVersion",
    "Layout",
    "LayoutConfig",
    "NEWEST_VERSION",
    "SPLIT_THP_BACKPORTS",
    "TABLE_CONFIGS",
    "TABLE_VERSIONS",
    "c_translation_unit",
    "compare",
    "layout",
    "layout_from_config",
    "layout_table",
    "layout_table_markdown",
    "MTHP_ORDERS",
    "OWNED_BLOCKS",
    "WHATIF_ARCHES",
    "mthp_fit",
    "mthp_layout_rows",
    "owned_blocks_rows",
    "parse_version",
]

MIGRATE_PCPTYPES = 3
PAGE_ALLOC_COSTLY_ORDER = 3
PAGEBLOCK_ORDER = 9
NR_LOCKDEP_CACHING_CLASSES = 2


@dataclasses.dataclass(frozen=True)
class Arch:
    """The parts of an architecture's C ABI and config that place the members.

    :param ptr: ``sizeof(void *)`` == ``sizeof(long)`` (ILP32 or LP64).
    :param cacheline: default ``L1_CACHE_BYTES``.
    :param cflags: gcc flags that compile for this ABI on this machine, or None
        if only an ABI-equivalent native build can check it.
    """

    name: str
    ptr: int
    cacheline: int
    cflags: tuple[str, ...] | None
    numa: bool

    @property
    def bits(self) -> int:
        return self.ptr * 8


#: Architectures. Every one has a 4-byte ``arch_spinlock_t`` (qspinlock on
#: x86, arm64, riscv, ppc64; the ticket/word locks of arm, s390 are 4 bytes too)
#: and natural alignment for int, short, u8 and pointers, so pointer size and
#: cacheline decide the layout. arm64, riscv64, ppc64 and s390x are LP64 like
#: x86_64 and are checked through the x86_64 build; arm through i386 (ILP32).
ARCHES: dict[str, Arch] = {
    "x86_64": Arch("x86_64", 8, 64, ("-m64",), True),
    "i386": Arch("i386", 4, 64, ("-m32",), False),
    "arm64": Arch("arm64", 8, 64, None, True),
    "arm": Arch("arm", 4, 64, None, False),
    "riscv64": Arch("riscv64", 8, 64, None, True),
    "ppc64": Arch("ppc64", 8, 128, None, True),
    "s390x": Arch("s390x", 8, 256, None, True),
}
_ARCH_ALIASES = {"amd64": "x86_64", "x86": "i386", "i686": "i386", "x86_32": "i386",
                 "aarch64": "arm64", "arm32": "arm", "ppc64le": "ppc64", "s390": "s390x"}


# --- the config --------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class LayoutConfig:
    """Everything that decides the layout of one ``struct per_cpu_pages``."""

    version: KernelVersion
    arch: Arch
    numa: bool
    thp: bool
    pcp_types: int
    thp_lists: int
    extra_lists: int
    debug_spinlock: bool
    lockdep: bool
    lock_stat: bool
    cacheline: int
    label: str = ""
    owned_blocks: int = 0

    @property
    def era(self) -> str:
        return era(self.version)

    @property
    def nr_lists(self) -> int:
        if self.era == "v4.4":
            return self.pcp_types
        return self.pcp_types * (PAGE_ALLOC_COSTLY_ORDER + 1) + self.thp_lists + self.extra_lists

    @property
    def aligned(self) -> bool:
        """``____cacheline_aligned_in_smp`` (v6.0 on; SMP assumed)."""
        return self.era in ("v6.0", "v6.7")

    def describe(self) -> str:
        parts = [str(self.version), self.arch.name, "NUMA" if self.numa else "!NUMA"]
        if self.era != "v4.4":
            parts.append(f"THP({self.thp_lists} list{'s' if self.thp_lists != 1 else ''})" if self.thp else "!THP")
        if self.pcp_types != MIGRATE_PCPTYPES:
            parts.append(f"{self.pcp_types} pcp types")
        if self.extra_lists:
            parts.append(f"+{self.extra_lists} mTHP lists")
        if self.owned_blocks:
            parts.append(f"+{self.owned_blocks} owned_blocks")
        if self.lock_stat:
            parts.append("LOCK_STAT")
        elif self.lockdep:
            parts.append("LOCKDEP")
        elif self.debug_spinlock:
            parts.append("DEBUG_SPINLOCK")
        parts.append(f"L1={self.cacheline}")
        return " ".join(parts)


def _get_arch(arch: str | Arch) -> Arch:
    if isinstance(arch, Arch):
        return arch
    name = _ARCH_ALIASES.get(str(arch).lower(), str(arch).lower())
    if name not in ARCHES:
        raise ConfigError(f"arch: unknown architecture {arch!r}; known: {', '.join(ARCHES)}")
    return ARCHES[name]


def _mthp_lists(policy: str, pcp_types: int, what: str) -> int:
    try:
        return nr_policy_lists(policy, pcp_types)
    except KeyError:
        raise ConfigError(f"{what}: {policy!r} is not one of per-type, single, split, none") from None


def _extra_lists(extra_orders: Any, pcp_types: int) -> int:
    if not extra_orders:
        return 0
    items = extra_orders.items() if isinstance(extra_orders, Mapping) else ((o, "single") for o in extra_orders)
    total, seen = 0, set()
    for order, policy in items:
        if isinstance(order, bool) or not isinstance(order, int) or not PAGE_ALLOC_COSTLY_ORDER < order < PAGEBLOCK_ORDER:
            raise ConfigError(
                f"extra_orders: order {order!r} cannot get pcp lists of its own; "
                f"use {PAGE_ALLOC_COSTLY_ORDER + 1}..{PAGEBLOCK_ORDER - 1}"
            )
        if order in seen:
            raise ConfigError(f"extra_orders: order {order} given twice")
        seen.add(order)
        total += _mthp_lists(policy, pcp_types, f"extra_orders[{order}]")
    return total


def make_config(version: str | KernelVersion = "v6.10", arch: str | Arch = "x86_64", *,
                numa: bool | None = None, thp: bool | None = None, thp_lists: int | str | None = None,
                extra_orders: Mapping[int, str] | Iterable[int] | None = None, pcp_cma: bool = False,
                debug_spinlock: bool | None = None, lockdep: bool | None = None, lock_stat: bool = False,
                cacheline: int | None = None, owned_blocks: int | str = 0) -> LayoutConfig:
    """Check and combine the config axes; see :func:`layout` for the parameters."""
    v = parse_version(version)
    a = _get_arch(arch)
    struct_era = era(v)
    cl = a.cacheline if cacheline is None else cacheline
    if isinstance(cl, bool) or cl not in (32, 64, 128, 256):
        raise ConfigError(f"cacheline: {cl!r} is not one of 32, 64, 128, 256")
    for name, val in (("numa", numa), ("thp", thp), ("pcp_cma", pcp_cma), ("lock_stat", lock_stat),
                      ("debug_spinlock", debug_spinlock), ("lockdep", lockdep)):
        if val is not None and not isinstance(val, bool):
            raise ConfigError(f"{name}: expected True or False, got {val!r}")
    pcp_types = MIGRATE_PCPTYPES + (1 if pcp_cma else 0)
    # Kconfig: LOCK_STAT selects DEBUG_LOCK_ALLOC, which selects DEBUG_SPINLOCK.
    if lock_stat and lockdep is False:
        raise ConfigError("lock_stat: CONFIG_LOCK_STAT selects CONFIG_DEBUG_LOCK_ALLOC; lockdep=False contradicts it")
    lockdep = bool(lockdep) or lock_stat
    if lockdep and debug_spinlock is False:
        raise ConfigError(
            "lockdep: CONFIG_DEBUG_LOCK_ALLOC selects CONFIG_DEBUG_SPINLOCK; "
            "debug_spinlock=False contradicts it"
        )
    debug_spinlock = bool(debug_spinlock) or lockdep
    if struct_era in ("v4.4", "v5.14") and debug_spinlock:
        raise ConfigError(
            f"debug_spinlock/lockdep: {v} has no pcp spinlock (it came in v6.0), "
            "so lock debugging does not change its struct per_cpu_pages"
        )
    if thp is None:
        thp = not (thp_lists == 0 or thp_lists == "none")
    if struct_era == "v4.4":
        if thp_lists or extra_orders:
            raise ConfigError(
                f"thp_lists/extra_orders: {v} keeps only order-0 pages on pcp lists "
                "(high-order lists came in v5.14)"
            )
        n_thp, extra = 0, 0
    else:
        if thp_lists is None:
            n_thp = default_thp_lists(v, pcp_types) if thp else 0
        elif isinstance(thp_lists, str):
            n_thp = _mthp_lists(thp_lists, pcp_types, "thp_lists")
        elif isinstance(thp_lists, bool) or not isinstance(thp_lists, int) or not 0 <= thp_lists <= pcp_types:
            raise ConfigError(f"thp_lists: {thp_lists!r} is not a list count in 0..{pcp_types} or a policy name")
        else:
            n_thp = thp_lists
        if not thp and n_thp:
            raise ConfigError(f"thp_lists: {n_thp} THP lists contradict thp=False (NR_PCP_THP is 0 without THP)")
        if thp and n_thp == 0:
            raise ConfigError("thp_lists: 0 THP lists with thp=True; pass thp=False for a kernel without THP")
        extra = _extra_lists(extra_orders, pcp_types)
        if extra and not thp:
            raise ConfigError("extra_orders: multi-size THP orders need thp=True")
    owned = _owned_blocks(owned_blocks, pcp_types, struct_era)
    return LayoutConfig(v, a, a.numa if numa is None else numa, thp, pcp_types, n_thp, extra,
                        debug_spinlock, lockdep, lock_stat, cl, owned_blocks=owned)


#: The pcp buddy RFC's ``owned_blocks`` list heads: none, the RFC's one list,
#: or one per pcp migratetype (Rik van Riel's review suggestion).
OWNED_BLOCKS = {"none": lambda nr_types: 0, "single": lambda nr_types: 1, "per-type": lambda nr_types: nr_types}


def _owned_blocks(owned: int | str, pcp_types: int, struct_era: str) -> int:
    if isinstance(owned, str):
        if owned not in OWNED_BLOCKS:
            raise ConfigError(f"owned_blocks: {owned!r} is not one of {', '.join(OWNED_BLOCKS)}")
        owned = OWNED_BLOCKS[owned](pcp_types)
    elif isinstance(owned, bool) or not isinstance(owned, int) or not 0 <= owned <= pcp_types:
        raise ConfigError(f"owned_blocks: {owned!r} is not a list count in 0..{pcp_types} or one of "
                          f"{', '.join(OWNED_BLOCKS)}")
    if owned and struct_era != "v6.7":
        raise ConfigError("owned_blocks: the pcp buddy RFC patches the v6.7+ struct (after free_count)")
    return owned


# --- fields and placement ----------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Field:
    """One member: C type, name, array count, offset and size in bytes."""

    ctype: str
    name: str
    count: int | None
    offset: int
    size: int
    align: int

    @property
    def decl(self) -> str:
        return self.name if self.count is None else f"{self.name}[{self.count}]"

    @property
    def end(self) -> int:
        return self.offset + self.size


def _spinlock_size(cfg: LayoutConfig) -> tuple[int, int]:
    """sizeof/alignof ``spinlock_t`` (!PREEMPT_RT, SMP).

    ``arch_spinlock_t`` is 4 bytes. CONFIG_DEBUG_SPINLOCK adds ``unsigned int
    magic, owner_cpu; void *owner``. CONFIG_DEBUG_LOCK_ALLOC adds ``struct
    lockdep_map dep_map`` (:linux:`include/linux/lockdep_types.h`): ``key``,
    ``class_cache[NR_LOCKDEP_CACHING_CLASSES]`` and ``name`` pointers, three u8
    (wait_type_outer, wait_type_inner, lock_type), and with CONFIG_LOCK_STAT
    ``int cpu; unsigned long ip``. Older kernels had two ``short`` wait types and
    no lock_type instead of the three u8: the same 4 bytes after padding, so the
    size does not depend on which of the two a version has. PREEMPT_RT (where
    spinlock_t is an rt_mutex) and !SMP (an empty arch_spinlock_t, no
    cacheline alignment) are not modelled.
    """
    p = cfg.arch.ptr
    size, align = 4, 4
    if cfg.debug_spinlock:
        size = _roundup(size + 4 + 4, p) + p
        align = p
    if cfg.lockdep:
        dep = (2 + NR_LOCKDEP_CACHING_CLASSES) * p + 3
        if cfg.lock_stat:
            dep = _roundup(dep, 4) + 4
            dep = _roundup(dep, p) + p
        dep = _roundup(dep, p)
        size = _roundup(size, p) + dep
        align = p
    return _roundup(size, align), align


def _roundup(n: int, a: int) -> int:
    return -(-n // a) * a


def _member_types(cfg: LayoutConfig) -> list[tuple[str, str, int | None]]:
    era = cfg.era
    members: list[tuple[str, str, int | None]] = []
    if era in ("v6.0", "v6.7"):
        members.append(("spinlock_t", "lock", None))
    members += [("int", "count", None), ("int", "high", None)]
    if era == "v6.7":
        members += [("int", "high_min", None), ("int", "high_max", None)]
    members.append(("int", "batch", None))
    if era == "v6.7":
        members += [("u8", "flags", None), ("u8", "alloc_factor", None)]
        if cfg.numa:
            members.append(("u8", "expire", None))
        members.append(("short int", "free_count", None))
        if cfg.owned_blocks:
            # The RFC puts the list head between free_count and the lists.
            members.append(("struct list_head", "owned_blocks",
                            None if cfg.owned_blocks == 1 else cfg.owned_blocks))
    elif era in ("v5.14", "v6.0"):
        members.append(("short int", "free_factor", None))
        if cfg.numa:
            members.append(("short int", "expire", None))
    members.append(("struct list_head", "lists", cfg.nr_lists))
    return members


def _type_size(cfg: LayoutConfig, ctype: str) -> tuple[int, int]:
    if ctype == "spinlock_t":
        return _spinlock_size(cfg)
    if ctype == "struct list_head":
        return 2 * cfg.arch.ptr, cfg.arch.ptr
    return {"int": (4, 4), "short int": (2, 2), "u8": (1, 1)}[ctype]


class Layout:
    """The placed ``struct per_cpu_pages`` of one config.

    ``size`` is ``sizeof``; ``members_end`` is where the last member (the lists)
    ends, i.e. the bytes the members need before tail padding; ``cachelines`` is
    ``size / L1`` rounded up (pahole's count; for the aligned struct it is also
    what each CPU's copy touches). ``worst_cachelines`` is what an unaligned
    (pre-v6.0) copy can straddle.
    """

    def __init__(self, cfg: LayoutConfig) -> None:
        self.config = cfg
        fields, off, align = [], 0, 1
        for ctype, name, count in _member_types(cfg):
            size, a = _type_size(cfg, ctype)
            off = _roundup(off, a)
            total = size * (count or 1)
            fields.append(Field(ctype, name, count, off, total, a))
            off += total
            align = max(align, a)
        self.fields: tuple[Field, ...] = tuple(fields)
        self.members_end = off
        if cfg.aligned:
            align = max(align, cfg.cacheline)
        self.align = align
        self.size = _roundup(off, align)
        self.padding = self.size - off
        self.holes: list[tuple[str, int, int]] = []  # (after member, offset, bytes)
        for prev, nxt in zip(fields, fields[1:]):
            if nxt.offset > prev.end:
                self.holes.append((prev.name, prev.end, nxt.offset - prev.end))
        self.sum_members = sum(f.size for f in fields)
        cl = cfg.cacheline
        self.cachelines = -(-self.size // cl)
        self.worst_cachelines = self.cachelines if cfg.aligned else -(-(self.size + cl - self.align) // cl)

    @property
    def nr_lists(self) -> int:
        return self.config.nr_lists

    @property
    def offsets(self) -> dict[str, int]:
        return {f.name: f.offset for f in self.fields}

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def cacheline_map(self) -> list[dict[str, Any]]:
        """For each cacheline of the struct: its byte range and the members in it."""
        cl = self.config.cacheline
        out = []
        for i in range(self.cachelines):
            lo, hi = i * cl, (i + 1) * cl
            names = [f.decl for f in self.fields if f.offset < hi and f.end > lo]
            out.append({"index": i, "start": lo, "end": hi, "fields": names,
                        "padding": max(0, min(hi, self.size) - max(lo, self.members_end))})
        return out

    def as_dict(self) -> dict[str, Any]:
        c = self.config
        return {
            "version": str(c.version), "arch": c.arch.name, "bits": c.arch.bits, "numa": c.numa,
            "thp": c.thp, "thp_lists": c.thp_lists, "extra_lists": c.extra_lists, "owned_blocks": c.owned_blocks,
            "pcp_types": c.pcp_types, "debug_spinlock": c.debug_spinlock, "lockdep": c.lockdep,
            "lock_stat": c.lock_stat, "cacheline": c.cacheline, "cacheline_aligned": c.aligned,
            "nr_lists": c.nr_lists, "members_end": self.members_end, "sum_members": self.sum_members,
            "size": self.size, "padding": self.padding, "cachelines": self.cachelines,
            "worst_cachelines": self.worst_cachelines, "description": c.describe(),
            "fields": [{"name": f.name, "decl": f.decl, "type": f.ctype, "offset": f.offset,
                        "size": f.size} for f in self.fields],
            "holes": [{"after": a, "offset": o, "size": s} for a, o, s in self.holes],
            "cachelines_map": self.cacheline_map(),
        }

    def pahole(self) -> str:
        """The struct as ``pahole -C per_cpu_pages --cacheline_size=L1`` prints it."""
        cl = self.config.cacheline
        lines = ["struct per_cpu_pages {"]
        last_line = 0
        for i, f in enumerate(self.fields):
            line = f.offset // cl
            if line > last_line:
                ago = f.offset - line * cl
                tail = f" was {ago} bytes ago" if ago else ""
                lines.append(f"\t/* --- cacheline {line} boundary ({line * cl} bytes){tail} --- */")
                last_line = line
            lines.append(f"\t{f.ctype:<26} {f.decl + ';':<21} /* {f.offset:5} {f.size:5} */")
            if i + 1 < len(self.fields) and self.fields[i + 1].offset > f.end:
                gap = self.fields[i + 1].offset - f.end
                lines += ["", f"\t/* XXX {gap} byte{'s' if gap != 1 else ''} hole, try to pack */", ""]
        lines += ["", f"\t/* size: {self.size}, cachelines: {self.cachelines}, members: {len(self.fields)} */"]
        if self.holes:
            lines.append(f"\t/* sum members: {self.sum_members}, holes: {len(self.holes)}, "
                         f"sum holes: {sum(h[2] for h in self.holes)} */")
        if self.padding:
            lines.append(f"\t/* padding: {self.padding} */")
        if self.size % cl:
            lines.append(f"\t/* last cacheline: {self.size % cl} bytes */")
        lines.append("} __attribute__((__aligned__(%d)));" % self.align if self.config.aligned else "};")
        return "\n".join(lines) + "\n"

    def __repr__(self) -> str:
        return (f"<Layout {self.config.describe()}: {self.nr_lists} lists, size {self.size}, "
                f"{self.cachelines} cachelines>")


def layout(version_or_config: Any = "v6.10", arch: str | Arch = "x86_64", **axes: Any) -> Layout:
    """Layout of ``struct per_cpu_pages`` for a kernel version or a KernelConfig.

    >>> l = layout("v6.10", arch="x86_64")
    >>> l.offsets["lists"], l.nr_lists, l.size, l.cachelines
    (32, 14, 256, 4)

    :param version_or_config: ``"v6.10"``, ``"6.6.37"``, ``"v6.10-rc6"``, a
        :class:`LayoutConfig`, or a :class:`pcpemu.KernelConfig` (see
        :func:`layout_from_config`).
    :param arch: ``x86_64``, ``i386``, ``arm64``, ``arm``, ``riscv64``, ``ppc64``, ``s390x``.
    :param numa: CONFIG_NUMA (default: on for 64-bit arches, off for 32-bit).
    :param thp: CONFIG_TRANSPARENT_HUGEPAGE (default on).
    :param thp_lists: THP lists, 0..pcp types, or a policy (``per-type``,
        ``single``, ``split``, ``none``); default what the version has.
    :param extra_orders: further pcp orders (4..8), a mapping order -> policy or
        a list of orders (one list each).
    :param pcp_cma: Android: MIGRATE_CMA is a 4th pcp type.
    :param debug_spinlock: CONFIG_DEBUG_SPINLOCK.
    :param lockdep: CONFIG_DEBUG_LOCK_ALLOC (implies debug_spinlock, as Kconfig does).
    :param lock_stat: CONFIG_LOCK_STAT (implies lockdep).
    :param cacheline: L1_CACHE_BYTES (default the arch's).
    :param owned_blocks: the pcp buddy RFC's ``struct list_head owned_blocks``:
        ``"none"`` (0), ``"single"`` (1, the RFC) or ``"per-type"`` (one per pcp
        migratetype, the review's variant), or a count.
    :raises ConfigError: for an unknown version or arch, or an impossible config.
    """
    if isinstance(version_or_config, LayoutConfig):
        if axes or arch != "x86_64":
            raise ConfigError("layout: a LayoutConfig already fixes every axis; pass no others")
        return Layout(version_or_config)
    if hasattr(version_or_config, "thp_lists") and hasattr(version_or_config, "mthp_orders"):
        return layout_from_config(version_or_config, arch=arch, **axes)
    return Layout(make_config(version_or_config, arch, **axes))


def layout_from_config(cfg: Any, *, version: str = "v6.10", arch: str | Arch = "x86_64", **axes: Any) -> Layout:
    """Layout of the emulator's pcp for a :class:`pcpemu.KernelConfig`.

    The struct is the one the emulator mirrors (the v6.7+ fields, ``version``
    by default v6.10); the lists follow the config: 3 pcp types (4 with
    ``pcp_cma``) x 4 low orders, the THP lists of ``thp_lists`` and the lists of
    each ``mthp_orders`` entry. NUMA and cacheline come from the config.
    """
    pcp_types = MIGRATE_PCPTYPES + (1 if cfg.pcp_cma else 0)
    return Layout(make_config(
        version, arch, numa=cfg.numa, thp=cfg.thp,
        thp_lists=_mthp_lists(cfg.thp_lists, pcp_types, "thp_lists") if cfg.thp else 0,
        extra_orders=dict(cfg.mthp_orders), pcp_cma=cfg.pcp_cma, cacheline=cfg.cacheline, **axes))


# --- comparison and the report table ------------------------------------------

def compare(a: Layout, b: Layout) -> str:
    """One line: does going from ``a`` to ``b`` add a cacheline?"""
    d = b.cachelines - a.cachelines
    verdict = ("no extra cacheline" if d == 0 else
               f"adds {d} cacheline{'s' if d > 1 else ''}" if d > 0 else
               f"saves {-d} cacheline{'s' if d < -1 else ''}")
    return (f"{a.config.version} -> {b.config.version}: {a.members_end} -> {b.members_end} bytes of members, "
            f"{a.cachelines} -> {b.cachelines} cachelines: {verdict}")


#: Versions of the report table: each change, and each side of each backport.
TABLE_VERSIONS = ("v5.13", "v5.14", "v5.19", "v6.0", "v6.1", "v6.1.97", "v6.6", "v6.6.37", "v6.7",
                  "v6.9", "v6.9.8", "v6.10", "v6.11", NEWEST_VERSION)

#: Common configs of the report table: (name, arch, axes).
TABLE_CONFIGS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("x86_64 NUMA", "x86_64", {"numa": True}),
    ("x86_64 !NUMA", "x86_64", {"numa": False}),
    ("x86_64 NUMA !THP", "x86_64", {"numa": True, "thp": False}),
    ("x86_64 NUMA LOCKDEP", "x86_64", {"numa": True, "lockdep": True}),
    ("i386 !NUMA", "i386", {"numa": False}),
    ("arm64 NUMA", "arm64", {"numa": True}),
    ("ppc64 NUMA (L1=128)", "ppc64", {"numa": True}),
)


def layout_table(versions: Iterable[str] = TABLE_VERSIONS,
                 configs: Iterable[tuple[str, str, dict[str, Any]]] = TABLE_CONFIGS) -> list[dict[str, Any]]:
    """Rows (dicts) of versions x configs with size and cachelines.

    ``thp_cachelines`` is how many cachelines the THP lists cost (against the
    same config with THP off); ``delta_cachelines`` is the change from the
    previous version of the same config. Configs a version cannot have (lock
    debugging before the pcp lock existed) are left out.
    """
    rows, prev = [], {}
    for ver in versions:
        for name, arch, axes in configs:
            try:
                lay = layout(ver, arch=arch, **axes)
            except ConfigError:
                continue
            if lay.config.thp and lay.config.era != "v4.4":
                nothp = layout(ver, arch=arch, **{**axes, "thp": False})
                thp_cost = lay.cachelines - nothp.cachelines
            else:
                thp_cost = 0
            last = prev.get(name)
            rows.append({
                "version": str(lay.config.version), "config": name, "arch": lay.config.arch.name,
                "nr_lists": lay.nr_lists, "thp_lists": lay.config.thp_lists,
                "lists_offset": lay.offsets["lists"], "members_end": lay.members_end,
                "size": lay.size, "cachelines": lay.cachelines,
                "worst_cachelines": lay.worst_cachelines, "cacheline_aligned": lay.config.aligned,
                "thp_cachelines": thp_cost,
                "delta_cachelines": 0 if last is None else lay.cachelines - last,
            })
            prev[name] = lay.cachelines
    return rows


def layout_table_markdown(rows: list[dict[str, Any]] | None = None) -> str:
    """The table as Markdown; a cacheline count the THP lists raise is in bold."""
    rows = layout_table() if rows is None else rows
    out = ["| version | config | lists | lists at | members | size | cachelines | THP lists cost |",
           "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        cl = f"**{r['cachelines']}**" if r["thp_cachelines"] > 0 else str(r["cachelines"])
        if r["delta_cachelines"]:
            cl += f" ({r['delta_cachelines']:+d})"
        if not r["cacheline_aligned"]:
            cl += f" (up to {r['worst_cachelines']} unaligned)"
        cost = f"+{r['thp_cachelines']} cacheline" if r["thp_cachelines"] else "-"
        out.append(f"| {r['version']} | {r['config']} | {r['nr_lists']} ({r['thp_lists']} THP) | "
                   f"{r['lists_offset']} | {r['members_end']} | {r['size']} | {cl} | {cost} |")
    return "\n".join(out) + "\n"


# --- what-if: mTHP lists (Mel Gorman's question) and the pcp buddy RFC ----------

#: Orders a multi-size THP can have that are neither pcp low orders nor PMD THP.
MTHP_ORDERS = (4, 5, 6, 7, 8)
#: (arch, L1) pairs of the what-if tables: arm64 also with 128-byte lines.
WHATIF_ARCHES = (("x86_64", 64), ("arm64", 64), ("arm64", 128), ("i386", 64))
MTHP_POLICIES = ("single", "split", "per-type")


def mthp_layout_rows(version: str = "v6.10", arches: Iterable[tuple[str, int]] = WHATIF_ARCHES,
                     policies: Iterable[str] = MTHP_POLICIES) -> list[dict[str, Any]]:
    """Size and cachelines of the struct for every set of extra mTHP orders
    (each of the 2**5 subsets of MTHP_ORDERS) under each list policy, per arch.

    ``extra_cachelines`` is against the same arch's ``version`` struct."""
    rows = []
    for arch, cl in arches:
        base = layout(version, arch, cacheline=cl)
        for policy in policies:
            for k in range(len(MTHP_ORDERS) + 1):
                for orders in itertools.combinations(MTHP_ORDERS, k):
                    lay = layout(version, arch, cacheline=cl, extra_orders={o: policy for o in orders})
                    rows.append({"version": version, "arch": arch, "cacheline": cl, "policy": policy,
                                 "orders": list(orders), "extra_lists": lay.config.extra_lists,
                                 "nr_lists": lay.nr_lists, "members_end": lay.members_end, "size": lay.size,
                                 "cachelines": lay.cachelines,
                                 "extra_cachelines": lay.cachelines - base.cachelines})
    return rows


def mthp_fit(version: str = "v6.10", arch: str = "x86_64", cacheline: int | None = None,
             policy: str = "split", lines: int | None = None) -> dict[str, Any]:
    """The largest number of mTHP orders whose lists fit in ``lines`` cachelines
    (default: as many as ``version``'s struct has on this arch), and the extra
    list counts at which each further cacheline starts.

    Every list is one ``struct list_head``, so which orders get lists does not
    change the size: only how many lists. ``orders`` names the lowest that fit.
    """
    base = layout(version, arch, cacheline=cacheline)
    cl = base.config.cacheline
    lines = base.cachelines if lines is None else lines
    per_order = _mthp_lists(policy, base.config.pcp_types, "policy")
    head = 2 * base.config.arch.ptr
    room = lines * cl - base.members_end
    fit_lists = max(room, -1) // head if room >= 0 else -1
    fit_orders = min(len(MTHP_ORDERS), fit_lists // per_order) if fit_lists >= 0 else 0
    # The n-th extra list starts a new line when it crosses a line boundary.
    steps = [n for n in range(1, len(MTHP_ORDERS) * per_order + 1)
             if -(-(base.members_end + n * head) // cl) > -(-(base.members_end + (n - 1) * head) // cl)]
    return {"version": version, "arch": base.config.arch.name, "cacheline": cl, "policy": policy,
            "base_cachelines": base.cachelines, "lines": lines, "base_members_end": base.members_end,
            "room_bytes": max(room, 0), "lists_per_order": per_order, "fit_lists": max(fit_lists, 0),
            "fit_orders": fit_orders, "orders": list(MTHP_ORDERS[:fit_orders]), "line_steps": steps,
            "fits": room >= 0}


def owned_blocks_rows(versions: Iterable[str] = ("v6.10",), arches: Iterable[tuple[str, int]] = WHATIF_ARCHES
                      ) -> list[dict[str, Any]]:
    """The pcp buddy RFC's ``owned_blocks`` (one list head) and the
    per-migratetype variant against each version's struct, per arch."""
    rows = []
    for version in versions:
        for arch, cl in arches:
            base = layout(version, arch, cacheline=cl)
            for variant in OWNED_BLOCKS:
                lay = layout(version, arch, cacheline=cl, owned_blocks=variant)
                rows.append({"version": version, "arch": arch, "cacheline": cl, "owned_blocks": variant,
                             "heads": lay.config.owned_blocks,
                             "lists_offset": lay.offsets["lists"], "members_end": lay.members_end,
                             "size": lay.size, "cachelines": lay.cachelines,
                             "extra_cachelines": lay.cachelines - base.cachelines})
    return rows


# --- C translation unit for the compiler cross-check ---------------------------

def c_translation_unit(lay: Layout, struct_name: str = "per_cpu_pages") -> str:
    """A C file declaring the modelled struct from kernel-like type definitions
    (not from the model's numbers) plus a ``_Static_assert`` on every offset and
    on the size, so that compiling it checks the model; compile with ``-g`` and
    pahole can render it."""
    cfg = lay.config
    t = ["#include <stddef.h>", "typedef unsigned char u8;",
         "struct list_head { struct list_head *next, *prev; };",
         "typedef struct { unsigned int val; } arch_spinlock_t;",
         "struct lock_class_key; struct lock_class;",
         "struct lockdep_map {", "\tstruct lock_class_key *key;",
         f"\tstruct lock_class *class_cache[{NR_LOCKDEP_CACHING_CLASSES}];", "\tconst char *name;",
         "\tu8 wait_type_outer; u8 wait_type_inner; u8 lock_type;"]
    if cfg.lock_stat:
        t.append("\tint cpu; unsigned long ip;")
    t += ["};", "struct raw_spinlock {", "\tarch_spinlock_t raw_lock;"]
    if cfg.debug_spinlock:
        t.append("\tunsigned int magic, owner_cpu; void *owner;")
    if cfg.lockdep:
        t.append("\tstruct lockdep_map dep_map;")
    t += ["};", "typedef struct spinlock { struct raw_spinlock rlock; } spinlock_t;", f"struct {struct_name} {{"]
    for f in lay.fields:
        t.append(f"\t{f.ctype} {f.decl};")
    t.append("}" + (f" __attribute__((__aligned__({cfg.cacheline})))" if cfg.aligned else "") + ";")
    t.append(f"struct {struct_name} pcp_instance;")
    for f in lay.fields:
        t.append(f'_Static_assert(offsetof(struct {struct_name}, {f.name}) == {f.offset}, '
                 f'"{f.name}: model offset {f.offset}");')
        t.append(f'_Static_assert(sizeof(((struct {struct_name} *)0)->{f.name}) == {f.size}, '
                 f'"{f.name}: model size {f.size}");')
    t.append(f'_Static_assert(sizeof(struct {struct_name}) == {lay.size}, "sizeof: model {lay.size}");')
    return "\n".join(t) + "\n"
