"""pcpemu: an emulator of the Linux page allocator (buddy + per-CPU page lists)."""

from .kernel.config import PRESETS, THP_LIST_POLICIES, KernelConfig
from .errors import (
    BadOrderError,
    BadPfnError,
    ConfigError,
    DoubleFreeError,
    InvariantError,
    NotAllocatedError,
    OpStreamError,
    PcpemuError,
    TraceFormatError,
    UnknownGfpError,
    WrongOrderError,
)
from .kernel.gfp import parse_gfp, show_gfp_flags
from .kernel.layout import Layout, layout

__version__ = "0.1.0"

__all__ = [
    "BadOrderError",
    "BadPfnError",
    "ConfigError",
    "DoubleFreeError",
    "InvariantError",
    "KernelConfig",
    "Layout",
    "Machine",
    "NotAllocatedError",
    "OpStreamError",
    "PRESETS",
    "PcpemuError",
    "THP_LIST_POLICIES",
    "TraceFormatError",
    "UnknownGfpError",
    "WrongOrderError",
    "__version__",
    "layout",
    "parse_gfp",
    "show_gfp_flags",
]


def __getattr__(name: str):
    # Machine needs the compiled core; import it on first use so that the
    # pure-Python parts work without a build.
    if name == "Machine":
        from .machine import Machine

        return Machine
    raise AttributeError(f"module 'pcpemu' has no attribute {name!r}")
