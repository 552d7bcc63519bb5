"""Kernel versions as the layout model reads them: releases, stable releases
and -rcs, the struct per_cpu_pages era each belongs to, and how many THP pcp
lists each has (44042b449872, 5d0a661d808f, bf14ed81f571 and its stable
backports)."""

from __future__ import annotations

import dataclasses
import re

from ..errors import ConfigError

__all__ = ["KernelVersion", "NEWEST_VERSION", "OLDEST_VERSION", "SPLIT_THP_BACKPORTS", "era",
           "default_thp_lists", "parse_version", "parse_version_key"]


@dataclasses.dataclass(frozen=True, order=True)
class KernelVersion:
    """A kernel release: ``6.10``, a stable ``6.6.37`` or a ``6.10-rc6``."""

    key: tuple[int, int, int, int]
    text: str = dataclasses.field(compare=False)

    @property
    def major_minor(self) -> tuple[int, int]:
        return self.key[:2]

    @property
    def stable(self) -> int:
        return self.key[3]

    def __str__(self) -> str:
        return self.text


_VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?(?:-rc(\d+))?$")
_RELEASE = 99  # sorts a release after all of its -rcs

#: Oldest and newest versions the model covers. v4.4..v5.13 share one struct
#: (DepSurf BTF dumps); v6.10..v6.18 are the v6.10 struct (v6.10, v6.11.11 read
#: in source; v6.17.2 as quoted in study notes; v6.18 from the BTF of a running
#: 6.18.44 kernel: 256 bytes, 14 lists without CMA, same offsets).
OLDEST_VERSION = (4, 4)
NEWEST_VERSION = "v6.18"

#: Stable trees that got bf14ed81f571 on top of their own struct: the first
#: stable release of each series with two THP lists. 6.9.8 and 6.6.37 come from
#: the 2024-07-02 stable review series; 6.1.97 from the 6.1.y backport sent the
#: same day (the release number for 6.1 is the least certain of the three).
SPLIT_THP_BACKPORTS: dict[tuple[int, int], int] = {(6, 1): 97, (6, 6): 37, (6, 9): 8}


def parse_version(text: str | KernelVersion) -> KernelVersion:
    """``"v6.10"``, ``"6.6.37"``, ``"v6.10-rc6"`` -> KernelVersion.

    :raises ConfigError: for a malformed version or one outside the model.
    """
    if isinstance(text, KernelVersion):
        return text
    m = _VERSION.match(str(text).strip()) if isinstance(text, str) else None
    if not m:
        raise ConfigError(
            f"version: cannot read {text!r}; accepted: v{OLDEST_VERSION[0]}.{OLDEST_VERSION[1]}"
            f"..{NEWEST_VERSION} as 'v6.10', '6.10', stable '6.6.37' or '6.10-rc6'"
        )
    major, minor = int(m.group(1)), int(m.group(2))
    patch, rc = m.group(3), m.group(4)
    if patch is not None and rc is not None:
        raise ConfigError(f"version: {text!r} names both a stable release and an -rc")
    key = (major, minor, int(rc) if rc else _RELEASE, int(patch or 0))
    newest = parse_version_key(NEWEST_VERSION)
    if (major, minor) < OLDEST_VERSION or (major, minor) > newest[:2]:
        raise ConfigError(
            f"version: {text!r} is outside the modelled range "
            f"v{OLDEST_VERSION[0]}.{OLDEST_VERSION[1]}..{NEWEST_VERSION} (struct changes at v5.14, v6.0, "
            "v6.7, v6.10-rc6; two THP lists backported to 6.1.97, 6.6.37, 6.9.8)"
        )
    label = f"v{major}.{minor}" + (f".{patch}" if patch else "") + (f"-rc{rc}" if rc else "")
    return KernelVersion(key, label)


def parse_version_key(text: str) -> tuple[int, int, int, int]:
    m = _VERSION.match(text)
    assert m, text
    return (int(m.group(1)), int(m.group(2)), int(m.group(4) or _RELEASE), int(m.group(3) or 0))


def _at_least(v: KernelVersion, major: int, minor: int, rc: int = 1) -> bool:
    # True from major.minor-rc<rc> on (rc1: the merge window of that release).
    return v.key >= (major, minor, rc, 0)


def era(v: KernelVersion) -> str:
    """Which struct a version has: 'v4.4', 'v5.14', 'v6.0' or 'v6.7'."""
    if _at_least(v, 6, 7, 1):
        return "v6.7"
    if _at_least(v, 6, 0, 1):
        return "v6.0"
    if _at_least(v, 5, 14, 1):
        return "v5.14"
    return "v4.4"


def default_thp_lists(v: KernelVersion, pcp_types: int) -> int:
    """NR_PCP_THP (as lists) of a version with CONFIG_TRANSPARENT_HUGEPAGE=y."""
    struct_era = era(v)
    if struct_era == "v4.4":
        return 0
    if struct_era == "v5.14":
        return pcp_types  # one per pcp type (44042b449872)
    if v.key >= (6, 10, 6, 0):
        return 2
    backport = SPLIT_THP_BACKPORTS.get(v.major_minor)
    if backport is not None and v.key[2] == _RELEASE and v.stable >= backport:
        return 2
    return 1
