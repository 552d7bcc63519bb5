"""The pcpemu exception tree: one class per kind of bad input or broken invariant."""

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
    "NotAllocatedError",
    "OpStreamError",
    "OutputPathError",
    "PcpemuError",
    "StreamGfpError",
    "SweepSpecError",
    "TraceFormatError",
    "UnknownGfpError",
    "UnknownMigratetypeError",
    "UnknownZoneError",
    "WrongOrderError",
]


class PcpemuError(Exception):
    """Base class of every error pcpemu raises on purpose."""


class ConfigError(PcpemuError, ValueError):
    """A KernelConfig field is out of range or the fields contradict each other."""


class UnknownGfpError(PcpemuError, ValueError):
    """A gfp string names a flag the kernel does not have."""


class BadPfnError(PcpemuError, ValueError):
    """A pfn outside the emulated memory."""


class BadOrderError(PcpemuError, ValueError):
    """An order outside 0..MAX_PAGE_ORDER."""


class NotAllocatedError(PcpemuError, ValueError):
    """A free of a pfn that is not the head of an allocated block."""


class DoubleFreeError(NotAllocatedError):
    """A free of a pfn that is already free (in the buddy or on a pcp list)."""


class WrongOrderError(PcpemuError, ValueError):
    """A free whose order differs from the order the block was allocated with."""


class OpStreamError(PcpemuError, ValueError):
    """An op stream given to Machine.run() is malformed."""


class TraceFormatError(PcpemuError, ValueError):
    """A line of an ftrace capture that cannot be read."""


class CaptureError(PcpemuError, RuntimeError):
    """pcpemu capture cannot run or finish: not root, no tracefs or event, a bad
    output directory, a command that cannot start, an interruption."""


class CaptureLossError(CaptureError):
    """The ring buffer lost events during a capture (and --allow-loss was not given)."""


class SweepSpecError(PcpemuError, ValueError):
    """A sweep spec (pcpemu sweep) names an unknown axis, kind or workload, or is malformed."""


class InvariantError(PcpemuError, AssertionError):
    """Machine.check() found broken allocator state; the message names it."""


class OutputPathError(PcpemuError, ValueError):
    """An output path pcpemu may not write: a missing or unwritable directory, or
    an existing file or foreign directory it would replace."""


class BadCpuError(PcpemuError, ValueError):
    """A CPU number outside the machine's CPUs."""


class BadOwnerError(PcpemuError, ValueError):
    """An owner token that is not an int in 1..2**64-1."""


class UnknownZoneError(PcpemuError, ValueError):
    """A zone name that is not one of the machine's populated zones."""


class UnknownMigratetypeError(PcpemuError, ValueError):
    """A migratetype name the kernel does not have (or a pcp list index outside the table)."""


class BadSlotError(PcpemuError, ValueError):
    """An op-stream slot that is not an int in range."""


class StreamGfpError(OpStreamError, UnknownGfpError):
    """An op stream's allocation names a gfp alloc_pages would refuse: both a
    malformed stream and a bad gfp."""
