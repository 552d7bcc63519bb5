"""gfp flags: names <-> bits, gfp_migratetype and gfp_zone.

Mirrors include/linux/gfp_types.h and include/linux/gfp.h (v6.10) for x86_64
without CONFIG_KASAN_HW_TAGS (so __GFP_SKIP_KASAN is 0). The ALLOC_* flags of
mm/internal.h live in the compiled core, the only code that uses them.
"""

from __future__ import annotations

import functools
import re

from ..errors import UnknownGfpError

__all__ = [
    "GFP_FLAGS",
    "MIGRATETYPE_NAMES",
    "ZONE_NAMES",
    "gfp_migratetype",
    "gfp_zone",
    "parse_gfp",
    "show_gfp_flags",
]

# enum migratetype (include/linux/mmzone.h) and migratetype_names[].
MIGRATE_UNMOVABLE, MIGRATE_MOVABLE, MIGRATE_RECLAIMABLE = 0, 1, 2
MIGRATE_PCPTYPES = MIGRATE_HIGHATOMIC = 3
MIGRATE_CMA, MIGRATE_ISOLATE, MIGRATE_TYPES = 4, 5, 6
MIGRATETYPE_NAMES = ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "CMA", "Isolate")

# enum zone_type for x86_64 with CONFIG_ZONE_DEVICE (distribution kernels).
ZONE_DMA, ZONE_DMA32, ZONE_NORMAL, ZONE_MOVABLE, ZONE_DEVICE = 0, 1, 2, 3, 4
ZONE_NAMES = ("DMA", "DMA32", "Normal", "Movable", "Device")
MAX_NR_ZONES = 5
# zone->flags bits (enum zone_flags), as masks.
ZONE_BOOSTED_WATERMARK, ZONE_RECLAIM_ACTIVE, ZONE_BELOW_HIGH = 1 << 0, 1 << 1, 1 << 2

_BITS = {
    "__GFP_DMA": 0x1,
    "__GFP_HIGHMEM": 0x2,
    "__GFP_DMA32": 0x4,
    "__GFP_MOVABLE": 0x8,
    "__GFP_RECLAIMABLE": 0x10,
    "__GFP_HIGH": 0x20,
    "__GFP_IO": 0x40,
    "__GFP_FS": 0x80,
    "__GFP_ZERO": 0x100,
    "__GFP_DIRECT_RECLAIM": 0x400,
    "__GFP_KSWAPD_RECLAIM": 0x800,
    "__GFP_WRITE": 0x1000,
    "__GFP_NOWARN": 0x2000,
    "__GFP_RETRY_MAYFAIL": 0x4000,
    "__GFP_NOFAIL": 0x8000,
    "__GFP_NORETRY": 0x10000,
    "__GFP_MEMALLOC": 0x20000,
    "__GFP_COMP": 0x40000,
    "__GFP_NOMEMALLOC": 0x80000,
    "__GFP_HARDWALL": 0x100000,
    "__GFP_THISNODE": 0x200000,
    "__GFP_ACCOUNT": 0x400000,
    "__GFP_ZEROTAGS": 0x800000,
}
_B = _BITS
_RECLAIM = _B["__GFP_DIRECT_RECLAIM"] | _B["__GFP_KSWAPD_RECLAIM"]
_KERNEL = _RECLAIM | _B["__GFP_IO"] | _B["__GFP_FS"]
_USER = _KERNEL | _B["__GFP_HARDWALL"]
_HIGHUSER_MOVABLE = _USER | _B["__GFP_HIGHMEM"] | _B["__GFP_MOVABLE"]
_TRANSHUGE_LIGHT = (
    _HIGHUSER_MOVABLE | _B["__GFP_COMP"] | _B["__GFP_NOMEMALLOC"] | _B["__GFP_NOWARN"]
) & ~_RECLAIM

#: Every name parse_gfp() accepts, with its value.
GFP_FLAGS: dict[str, int] = {
    **_BITS,
    "__GFP_RECLAIM": _RECLAIM,
    "__GFP_SKIP_ZERO": 0,
    "__GFP_SKIP_KASAN": 0,
    "GFP_ATOMIC": _B["__GFP_HIGH"] | _B["__GFP_KSWAPD_RECLAIM"],
    "GFP_KERNEL": _KERNEL,
    "GFP_KERNEL_ACCOUNT": _KERNEL | _B["__GFP_ACCOUNT"],
    "GFP_NOWAIT": _B["__GFP_KSWAPD_RECLAIM"] | _B["__GFP_NOWARN"],
    "GFP_NOIO": _RECLAIM,
    "GFP_NOFS": _RECLAIM | _B["__GFP_IO"],
    "GFP_USER": _USER,
    "GFP_DMA": _B["__GFP_DMA"],
    "GFP_DMA32": _B["__GFP_DMA32"],
    "GFP_HIGHUSER": _USER | _B["__GFP_HIGHMEM"],
    "GFP_HIGHUSER_MOVABLE": _HIGHUSER_MOVABLE,
    "GFP_TRANSHUGE_LIGHT": _TRANSHUGE_LIGHT,
    "GFP_TRANSHUGE": _TRANSHUGE_LIGHT | _B["__GFP_DIRECT_RECLAIM"],
}

# show_gfp_flags() walks this table in order (include/trace/events/mmflags.h).
_SHOW_ORDER = (
    "GFP_TRANSHUGE", "GFP_TRANSHUGE_LIGHT", "GFP_HIGHUSER_MOVABLE", "GFP_HIGHUSER",
    "GFP_USER", "GFP_KERNEL_ACCOUNT", "GFP_KERNEL", "GFP_NOFS", "GFP_ATOMIC", "GFP_NOIO",
    "GFP_NOWAIT", "GFP_DMA", "__GFP_HIGHMEM", "GFP_DMA32", "__GFP_HIGH", "__GFP_IO",
    "__GFP_FS", "__GFP_NOWARN", "__GFP_RETRY_MAYFAIL", "__GFP_NOFAIL", "__GFP_NORETRY",
    "__GFP_COMP", "__GFP_ZERO", "__GFP_NOMEMALLOC", "__GFP_MEMALLOC", "__GFP_HARDWALL",
    "__GFP_THISNODE", "__GFP_RECLAIMABLE", "__GFP_MOVABLE", "__GFP_ACCOUNT", "__GFP_WRITE",
    "__GFP_RECLAIM", "__GFP_DIRECT_RECLAIM", "__GFP_KSWAPD_RECLAIM", "__GFP_ZEROTAGS",
)

_GFP_MASK = 0xFFFFFF  # bits 0..23; higher bits depend on config options pcpemu does not model

_TOKEN = re.compile(r"^(?:0x[0-9a-fA-F]+|[0-9]+|[A-Za-z_][A-Za-z0-9_]*)$")


def parse_gfp(gfp: str | int) -> int:
    """Turn ``"GFP_KERNEL | __GFP_COMP"``, ``"0xcc0"``, ``"none"`` or an int into a gfp_t.

    Accepts the kernel's flag and mask names joined by ``|`` (the form ftrace
    prints), hex or decimal numbers, and ``none`` for 0.

    :raises UnknownGfpError: for a name the kernel does not have, or bits above
        __GFP_ZEROTAGS, which depend on config options pcpemu does not model.
    """
    if type(gfp) is str:            # the common case first: one type test, one cache hit
        return _parse_gfp_text(gfp)
    if isinstance(gfp, bool) or not isinstance(gfp, (int, str)):
        raise UnknownGfpError(f"gfp must be a str or an int, not {type(gfp).__name__}")
    return _parse_gfp_text(gfp) if isinstance(gfp, str) else _checked_gfp(gfp)


@functools.lru_cache(maxsize=1024)
def _parse_gfp_text(gfp: str) -> int:
    # Cached: scripts name the same few masks on every call (770 -> 80 ns).
    text = gfp.strip()
    if text in ("none", "0"):
        return 0
    if not text:
        raise UnknownGfpError("empty gfp string")
    value = 0
    for part in text.split("|"):
        token = part.strip()
        if not _TOKEN.match(token):
            raise UnknownGfpError(f"cannot read gfp flag {token!r} in {gfp!r}")
        if token[0].isdigit():
            value |= int(token, 0)
        elif token in GFP_FLAGS:
            value |= GFP_FLAGS[token]
        else:
            raise UnknownGfpError(f"unknown gfp flag {token!r} in {gfp!r}")
    return _checked_gfp(value)


_GFP_MOVABLE_MASK = _B["__GFP_RECLAIMABLE"] | _B["__GFP_MOVABLE"]


def _checked_gfp(value: int) -> int:
    if value < 0 or value & ~_GFP_MASK:
        raise UnknownGfpError(
            f"gfp {value:#x} has bits outside 0..{_GFP_MASK:#x} (__GFP_DMA..__GFP_ZEROTAGS)"
        )
    if value & _GFP_MOVABLE_MASK == _GFP_MOVABLE_MASK:
        # gfp_migratetype() warns (VM_WARN_ON) on this pair: no migratetype has both.
        raise UnknownGfpError(f"gfp {value:#x} has both __GFP_MOVABLE and __GFP_RECLAIMABLE; "
                              "the kernel treats the pair as a bug (gfp_migratetype)")
    return value


def show_gfp_flags(gfp: int) -> str:
    """Render a gfp_t as ftrace's ``gfp_flags=%s`` does (show_gfp_flags in mmflags.h)."""
    if gfp == 0:
        return "none"
    names = []
    rest = gfp
    for name in _SHOW_ORDER:
        mask = GFP_FLAGS[name]
        if mask and rest & mask == mask:
            names.append(name)
            rest &= ~mask
    if rest:
        names.append(f"{rest:#x}")
    return "|".join(names)


def gfp_migratetype(gfp: int) -> int:
    """The migratetype a request asks for (gfp_migratetype in include/linux/gfp.h)."""
    return (gfp & _GFP_MOVABLE_MASK) >> 3


def gfp_zone(gfp: int) -> int:
    """The highest zone index a request may use (gfp_zone; no CONFIG_HIGHMEM on x86_64)."""
    if gfp & _B["__GFP_DMA"]:
        return ZONE_DMA
    if gfp & _B["__GFP_DMA32"]:
        return ZONE_DMA32
    if gfp & _B["__GFP_MOVABLE"] and gfp & _B["__GFP_HIGHMEM"]:
        return ZONE_MOVABLE
    return ZONE_NORMAL


def memalloc_pin(gfp: int) -> int:
    """current_gfp_context() inside memalloc_pin_save(): __GFP_MOVABLE is cleared."""
    return gfp & ~_B["__GFP_MOVABLE"]
