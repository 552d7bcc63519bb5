"""ftrace ``kmem:`` page-allocator events: a streaming reader, a writer, and /proc/zoneinfo.

Reads and writes the text that include/trace/events/kmem.h (the TP_printk formats) and
kernel/trace/trace_output.c (the ``trace``/``trace_pipe`` line prefix) produce, plus the
same events as ``trace-cmd report`` and ``perf script`` print them; parses the
/proc/zoneinfo text of mm/vmstat.c (zoneinfo_show_print).

The reader has two paths. A compiled path (pcpemu._ftrace) reads every line in the kernel's own
``trace`` format (the common case, and what :func:`write_ftrace` writes) without the GIL, in a
thread of its own beside the caller; any line it does not fully validate goes to a per-line
regex path, which reads the other formats, skips other events by reason and reports
malformed kmem lines with their line numbers.
"""

from __future__ import annotations

import gzip
import io
import lzma
import os
import queue
import re
import sys
import threading
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, NamedTuple, TextIO, Union

import numpy as np

from .. import _ftrace
from ..errors import TraceFormatError, UnknownGfpError
from .gfp import parse_gfp, show_gfp_flags

__all__ = [
    "EVENT_DTYPE",
    "COMPACTION_BEGIN",
    "COMPACTION_END",
    "EVENT_NAMES",
    "KSWAPD_SLEEP",
    "KSWAPD_WAKE",
    "MM_PAGE_ALLOC",
    "MM_PAGE_ALLOC_EXTFRAG",
    "MM_PAGE_ALLOC_ZONE_LOCKED",
    "MM_PAGE_FREE",
    "MM_PAGE_FREE_BATCHED",
    "MM_PAGE_FREE_PCP_LOCKED",
    "MM_PAGE_PCPU_DRAIN",
    "PFN_FAILED",
    "VMSTAT_UPDATE",
    "TraceEvent",
    "TraceStats",
    "for_each_event",
    "read_event_batches",
    "write_ftrace",
]

# Event kinds, numbered as Documentation/trace/postprocess/trace-pagealloc-postprocess.pl
# numbers them; 0 is never used.
MM_PAGE_ALLOC = 1
MM_PAGE_FREE = 2
MM_PAGE_FREE_BATCHED = 3
MM_PAGE_PCPU_DRAIN = 4
MM_PAGE_ALLOC_ZONE_LOCKED = 5
MM_PAGE_ALLOC_EXTFRAG = 6
#: A run of the vmstat worker on its CPU (workqueue_execute_start of vmstat_update,
#: which pcpemu capture records): refresh_cpu_vm_stats -> decay_pcp_high.
VMSTAT_UPDATE = 7
#: kswapd starting a run of balance_pgdat (vmscan:mm_vmscan_kswapd_wake), which sets
#: ZONE_RECLAIM_ACTIVE until it returns, and going to sleep (mm_vmscan_kswapd_sleep);
#: pfn holds the node.
KSWAPD_WAKE = 8
KSWAPD_SLEEP = 9
#: compact_zone's start and end (compaction:mm_compaction_begin, _end), between which
#: it empties the CPU's pcp of the zone (lru_add_drain_cpu_zone); pfn holds the
#: zone's first pfn.
COMPACTION_BEGIN = 10
COMPACTION_END = 11
#: A replay's reading of an mm_page_free: a free that found its CPU's pcp locked and
#: went to the buddy (pcpemu.runs.replay marks them; no tracepoint of its own).
MM_PAGE_FREE_PCP_LOCKED = 12

#: Tracepoint name of each kind, indexed by kind.
EVENT_NAMES = (
    "",
    "mm_page_alloc",
    "mm_page_free",
    "mm_page_free_batched",
    "mm_page_pcpu_drain",
    "mm_page_alloc_zone_locked",
    "mm_page_alloc_extfrag",
    "vmstat_update",
    "mm_vmscan_kswapd_wake",
    "mm_vmscan_kswapd_sleep",
    "mm_compaction_begin",
    "mm_compaction_end",
    "mm_page_free",
)
_KIND = {name: kind for kind, name in enumerate(EVENT_NAMES[:VMSTAT_UPDATE]) if name}
_WORK_VMSTAT = re.compile(rb"work struct \S+: function vmstat_update")
_ZONE_START = re.compile(rb"zone_start=(?P<pfn>0x[0-9a-f]+) .*")
#: The events beside the kmem ones that a replay reads: kind, subsystem, and the
#: fields (pfn: what the row's pfn holds).
_WORK_FIELDS = {
    "mm_vmscan_kswapd_wake": (KSWAPD_WAKE, b"vmscan", re.compile(rb"nid=(?P<pfn>\d+) order=(?P<order>\d+)\s*")),
    "mm_vmscan_kswapd_sleep": (KSWAPD_SLEEP, b"vmscan", re.compile(rb"nid=(?P<pfn>\d+)\s*")),
    "mm_compaction_begin": (COMPACTION_BEGIN, b"compaction", _ZONE_START),
    "mm_compaction_end": (COMPACTION_END, b"compaction", _ZONE_START),
}

#: The pfn of a failed mm_page_alloc (the kernel records -1UL and prints ``pfn=0x0``).
PFN_FAILED = -1

#: One event per row. Fields an event does not have are -1 (gfp: 0).
EVENT_DTYPE = np.dtype([
    ("kind", "u1"),                  # MM_PAGE_ALLOC .. MM_PAGE_ALLOC_EXTFRAG
    ("cpu", "u2"),                   # [CPU] of the line prefix
    ("pfn", "i8"),                   # pfn=, or PFN_FAILED
    ("order", "i1"),                 # order= (extfrag: alloc_order=)
    ("migratetype", "i1"),           # migratetype= (extfrag: alloc_migratetype=)
    ("gfp", "u4"),                   # gfp_flags= of mm_page_alloc
    ("timestamp", "f8"),             # seconds, or the raw count of a counter clock
    ("line", "i8"),                  # 1-based line number in the text
    ("fallback_order", "i1"),        # extfrag only
    ("fallback_migratetype", "i1"),  # extfrag only
    ("percpu_refill", "i1"),         # zone_locked only
    ("change_ownership", "i1"),      # extfrag only, -1 when the line does not print it
    ("kswapd", "i1"),                # 1: the line's task is kswapd (comm kswapd<nid>), else 0
])

_Source = Union[str, "os.PathLike[str]", BinaryIO, TextIO]


class TraceEvent(NamedTuple):
    """One kmem event, as :func:`for_each_event` yields it (one row of EVENT_DTYPE)."""

    kind: int
    cpu: int
    pfn: int
    order: int
    migratetype: int = -1
    gfp: int = 0
    timestamp: float = 0.0
    line: int = 0
    fallback_order: int = -1
    fallback_migratetype: int = -1
    percpu_refill: int = -1
    change_ownership: int = -1
    kswapd: int = 0

    @property
    def name(self) -> str:
        """The tracepoint name, e.g. ``"mm_page_alloc"``."""
        return EVENT_NAMES[self.kind]

    @property
    def failed(self) -> bool:
        """True for an mm_page_alloc that returned NULL."""
        return self.pfn == PFN_FAILED


@dataclass
class TraceStats:
    """What a read saw: events by name, skipped lines and malformed lines by reason.

    :param max_examples: how many malformed lines to keep in :attr:`examples`.
    """

    max_examples: int = 10
    lines: int = 0
    events: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    malformed: Counter = field(default_factory=Counter)
    #: (line number, reason, line text) of the first malformed lines.
    examples: list = field(default_factory=list)
    #: Sum of N over ``[LOST N EVENTS]`` markers; a replay of a lossy trace is incomplete.
    lost_events: int = 0
    failed_allocs: int = 0

    def _malformed(self, lineno: int, reason: str, line: bytes, strict: bool) -> None:
        text = _quote(line)
        reason = _quote(reason.encode())            # a reason may quote the line's field
        if strict:
            raise TraceFormatError(f"line {lineno}: {reason}: {text!r}")
        self.malformed[reason] += 1
        if len(self.examples) < self.max_examples:
            self.examples.append((lineno, reason, text))


#: Messages quote at most this many characters of a line.
QUOTE_MAX = 200


def _quote(line: bytes) -> str:
    # A line as a message shows it: decoded, and cut (a 60 MB line is no message).
    if len(line) <= QUOTE_MAX:
        return line.decode("utf-8", "replace")
    return line[:QUOTE_MAX].decode("utf-8", "replace") + f"... ({len(line):,} bytes)"


# ---------------------------------------------------------------------------------------
# Input. The parse (pcpemu._ftrace.Parser, in C without the GIL) runs in a thread of its
# own, a few batches ahead of the caller. A plain file is read(2) by the parser itself;
# an .xz file is decoded by liblzma in another thread straight into a ring the parser
# reads, neither holding the GIL (_ftrace.XzRing). When the build had no liblzma
# headers, and for .gz and streams that are not files, the text is decompressed in a
# Python thread (liblzma and zlib let go of the GIL while they work) and fed to the
# parser block by block.

#: Bytes per decompressed block: small enough that liblzma's output, its copy into the
#: parser and the parse of it stay in a core's L2 cache (parse alone from .xz on the
#: 1.98 M-event mix capture, medians of 6: 512 KiB 0.96 of `xz -dc`'s speed, 4 MiB 0.86).
_BLOCK = _ftrace.XZ_BLOCK
_GZIP_MAGIC = b"\x1f\x8b"
_XZ_MAGIC = b"\xfd7zXZ\x00"
#: Batches the parse thread may run ahead of the caller (each batch rows * 37 bytes):
#: enough that decompression and parse go on while the caller lays out a starting
#: state or replays the pre-pass (16 of 65536 rows: 39 MB; 4 took 15% longer from .xz).
_AHEAD = 16
_XZ_INPUT = 1 << 16


#: How far below the caller's the decompress and parse threads run (nice). Their
#: consumer, the replay on the caller's thread, is the one stage that cannot run ahead:
#: with fewer cores than busy threads it should not wait for a core while they fill
#: their queues (mix capture from .xz, 6 interleaved rounds against `xz -dc`, medians:
#: 0.72 at an equal priority, 0.85 ten below).
_HELPER_NICE = 10


def _below_caller() -> None:
    # Linux keeps a nice value per thread, and threads started from this one (liblzma's
    # decoders) inherit it. Elsewhere, or where it is refused, the thread keeps its own.
    if sys.platform == "linux":
        try:
            tid = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + _HELPER_NICE)
        except OSError:
            pass


def _source_name(source: _Source) -> str:
    return os.fspath(source) if isinstance(source, (str, os.PathLike)) else getattr(source, "name", "trace")


def _file_fd(raw: object) -> tuple[int, int] | None:
    # The descriptor of a seekable plain file object, set to the object's position, and
    # that position: the parser read(2)s it itself (the object is not read through again).
    if type(raw) not in (io.BufferedReader, io.FileIO) or not raw.seekable():  # type: ignore[attr-defined]
        return None
    fd, pos = raw.fileno(), raw.tell()  # type: ignore[attr-defined]
    os.lseek(fd, pos, os.SEEK_SET)
    return fd, pos


def _put_unless_stopped(q: queue.Queue, stop: threading.Event, item: object) -> None:
    # A producer thread's put into its bounded queue, given up when the reader is closed.
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


class _ReadAhead:
    """Blocks of a stream read by a background thread, a few blocks ahead."""

    def __init__(self, f: BinaryIO, depth: int = 4) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._f = f
        self._done = False
        self._thread = threading.Thread(target=self._run, name="pcpemu-decompress", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        _below_caller()
        try:
            while not self._stop.is_set():
                block = self._f.read(_BLOCK)
                self._put(block)
                if not block:
                    return
        except BaseException as err:        # handed to the reader
            self._put(err)

    def _put(self, item: object) -> None:
        _put_unless_stopped(self._queue, self._stop, item)

    def read(self, size: int = -1) -> bytes:
        """The next block (whatever its size), b"" at the end."""
        if self._done:
            return b""
        item = self._queue.get()
        if isinstance(item, BaseException):
            self._done = True
            raise item
        if not item:
            self._done = True
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


class _XzRingThread:
    """The thread that runs an XzRing; closing it stops the ring and joins the thread
    (before the file it reads closes)."""

    def __init__(self, ring: _ftrace.XzRing) -> None:
        self.ring = ring
        self._thread = threading.Thread(target=self._run, name="pcpemu-decompress", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        _below_caller()
        self.ring.run()

    def close(self) -> None:
        self.ring.stop()
        self._thread.join()


#: How an XzRing that ended badly is reported (the status Parser.error() gives).
_XZ_RING_ERRORS = {_ftrace.TRUNCATED: "truncated compressed data (the file ends inside an .xz stream)",
                   _ftrace.CORRUPT: "corrupt or unreadable compressed data (liblzma refused it)"}


class _XzBlocks:
    """The text of an .xz file in blocks as liblzma hands them out (LZMAFile without its
    buffering, which copies every byte twice more); concatenated streams as LZMAFile
    reads them (_compression.DecompressReader)."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._dec = lzma.LZMADecompressor()

    def read(self, size: int = _BLOCK) -> bytes:
        while True:
            if self._dec.eof:
                data = self._dec.unused_data or self._raw.read(_XZ_INPUT)
                if not data:
                    return b""
                self._dec = lzma.LZMADecompressor()
            elif self._dec.needs_input:
                data = self._raw.read(_XZ_INPUT)
                if not data:
                    raise EOFError("Compressed file ended before the end-of-stream marker was reached")
            else:
                data = b""
            block = self._dec.decompress(data, size)
            if block:
                return block

    def close(self) -> None:
        pass


def _read_block(f: BinaryIO, name: str) -> bytes:
    # A truncated or corrupt .gz/.xz shows up as EOFError, BadGzipFile (an
    # OSError), zlib.error or LZMAError while reading.
    try:
        block = f.read(_BLOCK)
    except (EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
        why = "truncated" if isinstance(exc, EOFError) else "corrupt or unreadable"
        raise TraceFormatError(f"{name}: {why} compressed data ({type(exc).__name__}: {exc})") from None
    return block.encode("utf-8") if isinstance(block, str) else block


class _Reader:
    """The parse of one trace in a thread of its own: batches of EVENT_DTYPE rows, each
    with its rows by kind, its failed allocations, and what else the parse saw up to it
    (a TraceStats of its own and the lines read)."""

    def __init__(self, source: _Source, batch: int, strict: bool, max_examples: int) -> None:
        self._name = _source_name(source)
        self._strict = strict
        self._max_examples = max_examples
        self._owned: list = []          # streams to close, in order
        self._ring: _ftrace.XzRing | None = None
        try:
            fd, self._feed = self._open(source)
            self._parser = _ftrace.Parser(fd, batch, EVENT_DTYPE, self._ring)
        except BaseException:
            self._close_streams()
            raise
        self._queue: queue.Queue = queue.Queue(maxsize=_AHEAD)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pcpemu-parse", daemon=True)
        self._thread.start()

    def _open(self, source: _Source) -> tuple[int, BinaryIO | None]:
        # (a descriptor the parser reads, None) or (-1, a stream to feed it from).
        if isinstance(source, io.TextIOBase):
            return -1, source  # type: ignore[return-value]
        raw = open(source, "rb") if isinstance(source, (str, os.PathLike)) else source
        if raw is not source:
            self._owned.append(raw)
        at = _file_fd(raw)
        fd = None if at is None else at[0]
        if at is not None:
            magic = os.pread(at[0], 6, at[1])
        elif hasattr(raw, "peek"):
            magic = raw.peek(6)[:6]
        elif raw.seekable():  # type: ignore[union-attr]
            pos = raw.tell()  # type: ignore[union-attr]
            magic = raw.read(6)  # type: ignore[union-attr]
            raw.seek(pos)  # type: ignore[union-attr]
        else:
            magic = b""
        if magic.startswith(_XZ_MAGIC) and at is not None and _ftrace.XZ_RING:
            self._ring = _ftrace.XzRing(at[0])
            self._owned.insert(0, _XzRingThread(self._ring))
            return -1, None
        if magic.startswith(_GZIP_MAGIC):
            f: BinaryIO = gzip.GzipFile(fileobj=raw)  # type: ignore[arg-type]
        elif magic.startswith(_XZ_MAGIC):
            f = _XzBlocks(raw)  # type: ignore[arg-type,assignment]
        elif fd is not None:
            return fd, None
        else:
            return -1, raw  # type: ignore[return-value]
        ahead = _ReadAhead(f)
        self._owned[:0] = [ahead, f]
        return -1, ahead  # type: ignore[return-value]

    def _run(self) -> None:
        _below_caller()
        try:
            p = self._parser
            stats = TraceStats(self._max_examples)
            gfp_cache: dict[bytes, int] = {}
            lines = 0
            while not self._stop.is_set():
                why = p.run()
                if why == _ftrace.REFUSED:
                    row = _slow_line(p.span(), p.lines + 1, stats, self._strict, gfp_cache)
                    if row is not None:
                        p.put(row)
                    p.next_line()
                elif why == _ftrace.GFP_MISS:
                    text = p.span()
                    try:
                        value = parse_gfp(text.decode("ascii"))
                    except (UnknownGfpError, UnicodeDecodeError):
                        value = -1          # the slow path reports it
                    p.learn_gfp(text, value)
                elif why == _ftrace.NEED_INPUT:
                    block = _read_block(self._feed, self._name)  # type: ignore[arg-type]
                    if block:
                        p.feed(block)
                    else:
                        p.finish()
                elif why == _ftrace.READ_ERROR:
                    raise TraceFormatError(f"{self._name}: cannot read: {os.strerror(p.error())}")
                elif why == _ftrace.XZ_ERROR:
                    text = (_XZ_RING_ERRORS.get(p.error())
                            or f"cannot read: {os.strerror(self._ring.read_errno())}")  # type: ignore[union-attr]
                    raise TraceFormatError(f"{self._name}: {text}")
                else:                       # FULL or EOF
                    self._put((*p.take_batch(), stats, p.lines - lines))
                    stats, lines = TraceStats(self._max_examples), p.lines
                    if why == _ftrace.EOF:
                        self._put(None)
                        return
        except BaseException as err:        # handed to the caller
            self._put(err)

    def _put(self, item: object) -> None:
        _put_unless_stopped(self._queue, self._stop, item)

    def __iter__(self) -> Iterator[tuple[np.ndarray, list[int], int, TraceStats, int]]:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        """Stop the parse, join the threads, close what was opened."""
        self._stop.set()
        self._thread.join()
        self._close_streams()

    def _close_streams(self) -> None:
        for stream in self._owned:
            stream.close()


# ---------------------------------------------------------------------------------------
# Slow path: one line at a time, every format.

# task-pid (trace, trace-cmd) or task pid[/tid] (perf), optional (tgid), [cpu],
# optional irq-info flags, timestamp, event name (perf prefixes the system).
_PREFIX = re.compile(
    rb"\s*(?P<task>.*?)[- ](?P<pid>\d+)(?:/\d+)?\s+(?:\(\s*(?:\d+|-+)\)\s+)?"
    rb"\[(?P<cpu>\d+)\]\s+(?:[.A-Za-z0-9]{4,5}\s+)?(?P<ts>\d+(?:\.\d+)?):\s+"
    rb"(?:(?P<sys>\w+):)?(?P<event>\w+):\s*(?P<fields>.*)"
)
_LOST = re.compile(rb"\[LOST (\d+) EVENTS\]")
_ANY_KMEM = re.compile(rb"\b(" + b"|".join(n.encode() for n in EVENT_NAMES if n) + rb"):")
_NULL_PAGES = {"0000000000000000", "00000000", "(null)", "(nil)", "0x0", "0"}
# Fields each event must have, and the older ones that may also appear (zone_locked
# printed cpu= and free_batched printed cold= before v4.15 / v4.14).
_REQUIRED = {
    MM_PAGE_ALLOC: ("pfn", "order", "migratetype", "gfp_flags"),
    MM_PAGE_FREE: ("pfn", "order"),
    MM_PAGE_FREE_BATCHED: ("pfn", "order"),
    MM_PAGE_PCPU_DRAIN: ("pfn", "order", "migratetype"),
    MM_PAGE_ALLOC_ZONE_LOCKED: ("pfn", "order", "migratetype", "percpu_refill"),
    MM_PAGE_ALLOC_EXTFRAG: ("pfn", "alloc_order", "fallback_order", "alloc_migratetype",
                            "fallback_migratetype"),
}
_OPTIONAL = {"page", "cpu", "cold", "pageblock_order", "fragmenting", "change_ownership"}


def _int(fields: dict[str, str], key: str, lo: int, hi: int) -> int:
    text = fields[key]
    try:
        value = int(text, 0) if key == "pfn" else int(text, 10)
    except ValueError:
        raise ValueError(f"bad number {key}={text}") from None
    if not lo <= value <= hi:
        raise ValueError(f"{key}={text} out of range {lo}..{hi}")
    return value


def _slow_line(line: bytes, lineno: int, stats: TraceStats, strict: bool,
               gfp_cache: dict[bytes, int]) -> tuple | None:
    # Returns an EVENT_DTYPE row tuple, or None after counting the line as skipped/bad.
    line = line.rstrip(b"\r")
    if not line.strip():
        stats.skipped["blank"] += 1
        return None
    if line.lstrip().startswith(b"#"):
        stats.skipped["comment"] += 1
        return None
    lost = _LOST.search(line)
    if lost:
        stats.lost_events += int(lost.group(1))
        stats.skipped["lost events"] += 1
        return None
    m = _PREFIX.fullmatch(line)
    if m is None:
        known = _ANY_KMEM.search(line)
        if known:
            stats._malformed(lineno, f"{known.group(1).decode()}: cannot read the line prefix",
                             line, strict)
        else:
            stats.skipped["not an event line"] += 1
        return None
    event = m.group("event").decode()
    kind = _KIND.get(event)
    if event == "workqueue_execute_start" and _WORK_VMSTAT.fullmatch(m.group("fields")):
        cpu = int(m.group("cpu"))
        return (VMSTAT_UPDATE, cpu, 0, -1, -1, 0, float(m.group("ts")), lineno, -1, -1, -1, -1, 0)
    work = _WORK_FIELDS.get(event)
    if work is not None and m.group("sys") in (None, work[1]):
        f = work[2].fullmatch(m.group("fields"))
        if f is None:
            stats._malformed(lineno, f"{event}: cannot read its fields", line, strict)
            return None
        order = min(int(f.group("order")), 63) if "order" in f.re.groupindex else -1
        return (work[0], int(m.group("cpu")), int(f.group("pfn"), 0), order, -1, 0, float(m.group("ts")), lineno,
                -1, -1, -1, -1, _by_kswapd(m))
    if kind is None or m.group("sys") not in (None, b"kmem"):
        stats.skipped[f"event {event}"] += 1
        return None
    try:
        fields: dict[str, str] = {}
        for token in m.group("fields").decode("ascii").split():
            key, eq, value = token.partition("=")
            if not eq or not value:
                raise ValueError(f"cannot read field {token!r}")
            if key not in _REQUIRED[kind] and key not in _OPTIONAL:
                raise ValueError(f"unexpected field {key}=")
            fields[key] = value
        for key in _REQUIRED[kind]:
            if key not in fields:
                raise ValueError(f"missing field {key}=")
        pfn = _int(fields, "pfn", 0, (1 << 63) - 1)
        null = fields.get("page") in _NULL_PAGES
        if null:
            if kind != MM_PAGE_ALLOC or pfn != 0:
                raise ValueError(f"NULL page with pfn={fields['pfn']}")
            pfn = PFN_FAILED
        order = mt = fb_order = fb_mt = refill = owner = -1
        gfp = 0
        if kind == MM_PAGE_ALLOC_EXTFRAG:
            order = _int(fields, "alloc_order", 0, 63)
            mt = _int(fields, "alloc_migratetype", 0, 63)
            fb_order = _int(fields, "fallback_order", 0, 63)
            fb_mt = _int(fields, "fallback_migratetype", 0, 63)
            if "change_ownership" in fields:
                owner = _int(fields, "change_ownership", 0, 1)
        else:
            order = _int(fields, "order", 0, 63)
            if "migratetype" in _REQUIRED[kind]:
                mt = _int(fields, "migratetype", 0, 63)
        if kind == MM_PAGE_ALLOC_ZONE_LOCKED:
            refill = _int(fields, "percpu_refill", 0, 1)
        if kind == MM_PAGE_ALLOC:
            tok = fields["gfp_flags"].encode()
            gfp = gfp_cache.get(tok, -1)
            if gfp < 0:
                gfp = gfp_cache[tok] = parse_gfp(fields["gfp_flags"])
        cpu = int(m.group("cpu"))
        if cpu > 65535:
            raise ValueError(f"cpu {cpu} out of range")
    except (ValueError, UnicodeDecodeError) as err:
        stats._malformed(lineno, f"{event}: {err}", line, strict)
        return None
    return (kind, cpu, pfn, order, mt, gfp, float(m.group("ts")), lineno, fb_order, fb_mt,
            refill, owner, _by_kswapd(m))


def _by_kswapd(m: re.Match) -> int:
    # The line's task is a kswapd thread (comm kswapd<nid>): the replay follows
    # balance_pgdat by kswapd's own events.
    return int(m.group("task").startswith(b"kswapd"))


# ---------------------------------------------------------------------------------------
# The public reader.


def read_event_batches(source: _Source, batch: int = 65536, *, strict: bool = False,
                       stats: TraceStats | None = None) -> Iterator[np.ndarray]:
    """Read kmem page-allocator events as EVENT_DTYPE arrays of ``batch`` rows (the last
    may be shorter), in constant memory.

    :param source: a path or an open file of ``trace``/``trace_pipe`` text, ``trace-cmd
        report`` or ``perf script`` output; ``.gz`` and ``.xz`` are recognised by their
        magic bytes.
    :param strict: raise on the first malformed kmem line instead of skipping it.
    :param stats: filled in as the read goes: lines, events, skipped and malformed lines.
    :raises TraceFormatError: with ``strict``, naming the line number and the line.
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, not {batch}")
    stats = TraceStats() if stats is None else stats
    reader = _Reader(source, batch, strict, stats.max_examples)
    try:
        for rows, kinds, failed, seen, lines in reader:
            _merge(stats, kinds, failed, seen, lines)
            if len(rows):
                yield rows
    finally:
        reader.close()


def _merge(stats: TraceStats, kinds: list[int], failed: int, seen: TraceStats, lines: int) -> None:
    # What the parse thread saw up to a batch, into the caller's stats.
    stats.lines += lines
    for k, n in enumerate(kinds):
        if n:
            stats.events[EVENT_NAMES[k]] += n
    stats.failed_allocs += failed
    stats.skipped.update(seen.skipped)
    stats.malformed.update(seen.malformed)
    stats.examples.extend(seen.examples[: max(0, stats.max_examples - len(stats.examples))])
    stats.lost_events += seen.lost_events


def for_each_event(source: _Source, *, strict: bool = False,
                   stats: TraceStats | None = None) -> Iterator[TraceEvent]:
    """Yield each kmem page-allocator event of a trace as a :class:`TraceEvent`.

    Takes the same arguments as :func:`read_event_batches`.

    >>> import io
    >>> text = (b"  python3-2906 [001] ..... 1459.279645: mm_page_free: "
    ...         b"page=000000002c62056f pfn=0x15becb order=0\\n")
    >>> ev = next(for_each_event(io.BytesIO(text)))
    >>> ev.name, ev.cpu, hex(ev.pfn), ev.order, ev.timestamp, ev.line
    ('mm_page_free', 1, '0x15becb', 0, 1459.279645, 1)
    """
    for rows in read_event_batches(source, 4096, strict=strict, stats=stats):
        for row in rows.tolist():
            yield TraceEvent(*row)


# ---------------------------------------------------------------------------------------
# The writer.


def _hash_ptr(pfn: int) -> int:
    # Unlike the kernel (siphash of the struct page address with a boot-time key), a
    # fixed 32-bit mix of the pfn (murmur3's fmix32), never 0 so it never reads as NULL.
    h = (pfn ^ (pfn >> 32)) & 0xFFFFFFFF
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    h ^= h >> 16
    return h or 1


_HEADER = """\
# tracer: nop
#
#                                _-----=> irqs-off/BH-disabled
#                               / _----=> need-resched
#                              | / _---=> hardirq/softirq
#                              || / _--=> preempt-depth
#                              ||| / _-=> migrate-disable
#                              |||| /     delay
#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION
#              | |         |   |||||     |         |
"""


def _format_fields(ev: TraceEvent) -> str:
    kind = ev.kind
    if kind == VMSTAT_UPDATE:
        return f"work struct {_hash_ptr(ev.cpu):016x}: function vmstat_update"
    if kind == KSWAPD_WAKE:
        return f"nid={ev.pfn} order={max(ev.order, 0)}"     # the order kswapd was woken for
    if kind == KSWAPD_SLEEP:
        return f"nid={ev.pfn}"
    if kind in (COMPACTION_BEGIN, COMPACTION_END):
        # Only the zone's start is kept; the scanners' pfns print as it.
        return (f"zone_start={ev.pfn:#x} migrate_pfn={ev.pfn:#x} free_pfn={ev.pfn:#x} zone_end={ev.pfn:#x}, "
                "mode=async" + (" status=complete" if kind == COMPACTION_END else ""))
    if ev.pfn == PFN_FAILED:
        if kind != MM_PAGE_ALLOC:
            raise ValueError(f"only mm_page_alloc can fail, not {EVENT_NAMES[kind]}")
        page, pfn = "0000000000000000", 0
    else:
        page, pfn = f"{_hash_ptr(ev.pfn):016x}", ev.pfn
    head = f"page={page} pfn={pfn:#x}"
    if kind == MM_PAGE_ALLOC:
        return (f"{head} order={ev.order} migratetype={ev.migratetype} "
                f"gfp_flags={show_gfp_flags(ev.gfp)}")
    if kind in (MM_PAGE_FREE, MM_PAGE_FREE_BATCHED, MM_PAGE_FREE_PCP_LOCKED):     # the last: an mm_page_free
        return f"{head} order={ev.order}"
    if kind == MM_PAGE_PCPU_DRAIN:
        return f"{head} order={ev.order} migratetype={ev.migratetype}"
    if kind == MM_PAGE_ALLOC_ZONE_LOCKED:
        return (f"{head} order={ev.order} migratetype={ev.migratetype} "
                f"percpu_refill={ev.percpu_refill}")
    if kind == MM_PAGE_ALLOC_EXTFRAG:
        return (f"{head} alloc_order={ev.order} fallback_order={ev.fallback_order} "
                f"pageblock_order=9 alloc_migratetype={ev.migratetype} "
                f"fallback_migratetype={ev.fallback_migratetype} "
                f"fragmenting={int(ev.fallback_order < 9)} "
                f"change_ownership={max(ev.change_ownership, 0)}")
    raise ValueError(f"unknown event kind {kind}")


def write_ftrace(events: Iterable[TraceEvent] | np.ndarray, file: TextIO, *,
                 comm: str = "pcpemu", pid: int = 1, header: bool = True) -> int:
    """Write events as the ``trace`` file prints them (irq-info on, record-tgid off).

    Lines are ``"%16s-%-7d [%03d] %5s %5lu.%06lu: %s: %s"`` (print_trace_fmt() in
    kernel/trace/trace_output.c) with the TP_printk text of include/trace/events/kmem.h.
    Unlike the kernel, ``page=`` is a fixed hash of the pfn (the kernel hashes the
    struct page address with a boot-time key), the flags column is ``.....``, and
    an extfrag event whose change_ownership is not known (-1) prints 0.

    :param events: :class:`TraceEvent` records or an EVENT_DTYPE array.
    :param file: a text file open for writing.
    :param comm: the task name printed on every line (at most 15 characters) but those
        of events read off kswapd's lines, which print ``kswapd0``.
    :param pid: the pid printed on every line.
    :param header: start with the kernel's ``# tracer: nop`` header.
    :return: the number of events written.
    """
    if header:
        file.write(_HEADER)
    prefix = f"{comm[:15]:>16}-{pid:<7d} "
    kswapd = f"{'kswapd0':>16}-{pid:<7d} "     # the task of a row read off kswapd's line
    rows = events.tolist() if isinstance(events, np.ndarray) else events
    n = 0
    for row in rows:
        ev = row if isinstance(row, TraceEvent) else TraceEvent(*row)
        usecs = round(ev.timestamp * 1e6)
        name = "workqueue_execute_start" if ev.kind == VMSTAT_UPDATE else EVENT_NAMES[ev.kind]
        head = kswapd if ev.kswapd else prefix
        file.write(f"{head}[{ev.cpu:03d}] ..... {usecs // 1000000:5d}.{usecs % 1000000:06d}: "
                   f"{name}: {_format_fields(ev)}\n")
        n += 1
    return n
