"""pcpemu: an emulator of the Linux page allocator (buddy + per-CPU page lists)."""

from .kernel.config import PRESETS, THP_LIST_POLICIES, KernelConfig
from .errors import (
    BadCpuError,
    BadOrderError,
    BadOwnerError,
    BadPfnError,
    BadSlotError,
    CaptureError,
    CaptureLossError,
    ConfigError,
    DoubleFreeError,
    InvariantError,
    NotAllocatedError,
    OpStreamError,
    OutputPathError,
    PcpemuError,
    StreamGfpError,
    SweepSpecError,
    TraceFormatError,
    UnknownGfpError,
    UnknownMigratetypeError,
    UnknownZoneError,
    WrongOrderError,
)
from .kernel.gfp import parse_gfp, show_gfp_flags
from .kernel.layout import Layout, layout

__version__ = "0.1.0"

__all__ = [
    "BadCpuError",
    "BadOrderError",
    "BadOwnerError",
    "BadPfnError",
    "BadSlotError",
    "CaptureError",
    "CaptureLossError",
    "ConfigError",
    "DoubleFreeError",
    "InvariantError",
    "KernelConfig",
    "Layout",
    "Machine",
    "NotAllocatedError",
    "OpStreamError",
    "OutputPathError",
    "PRESETS",
    "PcpemuError",
    "StreamGfpError",
    "SweepSpecError",
    "THP_LIST_POLICIES",
    "TraceFormatError",
    "UnknownGfpError",
    "UnknownMigratetypeError",
    "UnknownZoneError",
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
