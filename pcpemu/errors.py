"""The pcpemu exception tree: one class per kind of bad input or broken invariant."""

__all__ = [
    "BadOrderError",
    "BadPfnError",
    "CaptureError",
    "CaptureLossError",
    "ConfigError",
    "DoubleFreeError",
    "InvariantError",
    "NotAllocatedError",
    "OpStreamError",
    "PcpemuError",
    "SweepSpecError",
    "TraceFormatError",
    "UnknownGfpError",
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
