# The fast path of pcpemu.kernel.ftrace: lines in the kernel's own ``trace`` format
# (print_trace_fmt() in kernel/trace/trace_output.c, TP_printk of
# include/trace/events/kmem.h), read in C without the GIL, so that the parse runs in
# a thread of its own beside the replay. Every byte that carries a value is checked;
# the parser stops at a line it does not accept (the slow path in ftrace.py reads it)
# and at a gfp_flags text it has not seen (ftrace.py parses it and teaches the table).

from libc.errno cimport EINTR, errno
from libc.stdint cimport int8_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memchr, memcmp, memcpy, memmove, memset
from posix.unistd cimport read

import numpy as np

# The event kinds of the core (enum pcpemu_event_kind), as pcpemu.kernel.ftrace numbers them.
include "_kernel_h.pxi"

# What Parser.run stopped at.
cdef enum:
    S_FULL = 0          # the batch is full
    S_REFUSED = 1       # a line the fast path does not accept: span() is the line
    S_GFP_MISS = 2      # a gfp_flags text not in the table: span() is the text
    S_NEED_INPUT = 3    # feed mode: no whole line left, feed() more or finish()
    S_EOF = 4           # every line read
    S_READ_ERROR = 5    # read(2) failed: error() is the errno
    S_XZ_ERROR = 6      # the XzRing ended badly: error() is its status
FULL, REFUSED, GFP_MISS, NEED_INPUT, EOF, READ_ERROR, XZ_ERROR = (S_FULL, S_REFUSED, S_GFP_MISS, S_NEED_INPUT, S_EOF,
                                                                 S_READ_ERROR, S_XZ_ERROR)


cdef extern from "_xzring.h" nogil:
    cdef struct xz_ring:
        pass
    enum: XZ_RING_AVAILABLE, XZ_RING_BLOCK
    enum: XZ_RING_RUNNING, XZ_RING_END, XZ_RING_TRUNCATED, XZ_RING_CORRUPT, XZ_RING_READ_ERROR, XZ_RING_STOPPED
    xz_ring *xz_ring_new(int fd)
    int xz_ring_run(xz_ring *r)
    size_t xz_ring_take(xz_ring *r, uint8_t *dst)
    int xz_ring_status(xz_ring *r)
    int xz_ring_errno(xz_ring *r)
    void xz_ring_stop(xz_ring *r)
    void xz_ring_free(xz_ring *r)

#: Whether this build has liblzma (XzRing); without it .xz goes through Python's lzma.
XZ_RING = bool(XZ_RING_AVAILABLE)
TRUNCATED, CORRUPT = XZ_RING_TRUNCATED, XZ_RING_CORRUPT
#: Bytes per decompressed block, the ring's and the Python path's alike.
XZ_BLOCK = XZ_RING_BLOCK


cdef class XzRing:
    """An .xz file's text, decoded by liblzma into a ring of blocks without the GIL:
    run() decodes (in a thread of its own), a Parser given the ring reads it.

    :param fd: the file, read(2) from its current offset.
    """

    cdef xz_ring *ring

    def __cinit__(self, int fd):
        self.ring = xz_ring_new(fd)
        if self.ring == NULL:
            raise MemoryError("cannot set up liblzma's decoder")

    def __dealloc__(self):
        if self.ring != NULL:
            xz_ring_free(self.ring)

    def run(self):
        """Decode to the end (or stop()); returns how it ended."""
        cdef int status
        with nogil:
            status = xz_ring_run(self.ring)
        return status

    def stop(self):
        """Make run() return soon (the reader gave up)."""
        xz_ring_stop(self.ring)

    def read_errno(self):
        return xz_ring_errno(self.ring)

include "_event_row.pxi"

# irq-info flag characters (and the padding of %5lu).
cdef bint FLAG_OK[256]
for _c in range(256):
    FLAG_OK[_c] = _c in b" .DdbXNnpZzHhs0123456789abcdef"


cdef inline bint has(const uint8_t *s, Py_ssize_t i, Py_ssize_t end, const char *t, Py_ssize_t n) noexcept nogil:
    return i >= 0 and i + n <= end and memcmp(s + i, t, n) == 0


# The value of each lower-case hex digit, 99 for any other byte.
cdef uint8_t HEXVAL[256]
for _c in range(256):
    HEXVAL[_c] = _c - 48 if 48 <= _c <= 57 else _c - 87 if 97 <= _c <= 102 else 99


cdef inline int hexval(uint8_t c) noexcept nogil:
    return HEXVAL[c]


cdef inline Py_ssize_t scan(const uint8_t *s, Py_ssize_t i, Py_ssize_t end, int base, int64_t *ret) noexcept nogil:
    # Digits of `base` from i, at most 15; returns how many (the value in *ret).
    cdef int64_t v = 0
    cdef Py_ssize_t n = 0
    cdef int d
    while i + n < end and n < 15:
        d = hexval(s[i + n])
        if d >= base:
            break
        v = v * base + d
        n += 1
    ret[0] = v
    return n


cdef int kind_of(const uint8_t *s, Py_ssize_t p, Py_ssize_t end, Py_ssize_t *fields) noexcept nogil:
    # p is at "mm_page_"; sets *fields to the first byte after "page=".
    cdef Py_ssize_t q = p + 8
    if has(s, q, end, b"alloc: page=", 12):
        fields[0] = q + 12
        return MM_PAGE_ALLOC
    if has(s, q, end, b"free: page=", 11):
        fields[0] = q + 11
        return MM_PAGE_FREE
    if has(s, q, end, b"free_batched: page=", 19):
        fields[0] = q + 19
        return MM_PAGE_FREE_BATCHED
    if has(s, q, end, b"pcpu_drain: page=", 17):
        fields[0] = q + 17
        return MM_PAGE_PCPU_DRAIN
    if has(s, q, end, b"alloc_zone_locked: page=", 24):
        fields[0] = q + 24
        return MM_PAGE_ALLOC_ZONE_LOCKED
    return 0


cdef inline int8_t by_kswapd(const uint8_t *s, Py_ssize_t start, Py_ssize_t p) noexcept nogil:
    # The line's task (first on the line) is a kswapd thread, comm kswapd<nid>.
    while start < p and s[start] == 32:
        start += 1
    return has(s, start, p, b"kswapd", 6)


cdef bint prefix(const uint8_t *s, Py_ssize_t start, Py_ssize_t p, int64_t *cpu, double *ts) noexcept nogil:
    # " [%03d] <flags> %5lu.%06lu" ending just before the ": " at p.
    cdef int64_t secs, usec
    cdef Py_ssize_t n, t0, j, rb
    if p - 7 < start or s[p - 7] != 46 or scan(s, p - 6, p, 10, &usec) != 6:
        return False
    t0 = p - 7
    n = 0
    while n < 10 and t0 - 1 >= start and hexval(s[t0 - 1]) < 10:
        t0 -= 1
        n += 1
    if n == 0 or n > 9 or t0 - 1 < start or s[t0 - 1] != 32:
        return False
    scan(s, t0, p - 7, 10, &secs)
    rb = -1
    for j in range(t0 - 1, max(t0 - 16, start) - 1, -1):
        if s[j] == 93:
            rb = j
            break
        if not FLAG_OK[s[j]]:
            return False
    if rb < 0 or s[rb + 1] != 32:
        return False
    n = 0
    while n < 5 and rb - 1 - n >= start and hexval(s[rb - 1 - n]) < 10:
        n += 1
    if n == 0 or n > 4 or rb - 1 - n < start or s[rb - 1 - n] != 91:
        return False
    scan(s, rb - n, rb, 10, cpu)
    ts[0] = (secs * 1000000 + usec) / 1e6
    return cpu[0] < 65536


# ---------------------------------------------------------------------------------------
# gfp_flags texts seen so far -> gfp_t (-1: unreadable, the slow path reports it), an
# open-addressing table so that the parse needs no Python object.

cdef struct GfpEntry:
    Py_ssize_t off          # of the text in the table's pool; -1: empty
    Py_ssize_t len
    uint64_t hash
    int64_t value


cdef inline uint64_t text_hash(const uint8_t *s, Py_ssize_t n) noexcept nogil:
    # The length and the first and last 8 bytes (the table compares the whole text).
    cdef uint64_t head = 0, tail = 0
    if n >= 8:
        memcpy(&head, s, 8)
        memcpy(&tail, s + n - 8, 8)
    else:
        memcpy(&head, s, n)
    cdef uint64_t h = ((head * 0x9E3779B97F4A7C15ULL) ^ (tail * 0xC2B2AE3D27D4EB4FULL) ^ <uint64_t>n) \
        * 0x165667B19E3779F9ULL
    return h ^ (h >> 32)


cdef class Parser:
    """Reads kmem lines into EVENT_DTYPE batches, from a file descriptor (read(2)
    without the GIL) or from blocks fed to it.

    :param fd: a readable file descriptor, or -1 to be fed with :meth:`feed`.
    :param batch: rows per batch.
    :param dtype: EVENT_DTYPE (checked against the C row).
    :param xz: with fd -1, the XzRing to read instead of being fed.
    """

    cdef int fd
    cdef XzRing xz
    cdef bint eof
    cdef uint8_t *buf
    cdef Py_ssize_t cap, start, end
    cdef int64_t line
    cdef object batch_array
    cdef Event *rows
    cdef Py_ssize_t nrows, batch
    cdef Py_ssize_t span_start, span_end
    cdef int err
    cdef GfpEntry *table
    cdef Py_ssize_t table_size, table_used
    cdef uint8_t *pool
    cdef Py_ssize_t pool_cap, pool_used
    cdef object dtype
    cdef int64_t kinds[16]          # rows of the batch by kind
    cdef int64_t failed             # failed mm_page_alloc rows of the batch

    def __cinit__(self, int fd, Py_ssize_t batch, dtype, XzRing xz=None):
        check_event_dtype(dtype)
        self.fd = fd
        self.xz = xz
        self.batch = batch
        self.dtype = dtype
        self.cap = 8 << 20
        self.buf = <uint8_t *>malloc(self.cap + 1)
        self.table_size = 256
        self.table = <GfpEntry *>malloc(self.table_size * sizeof(GfpEntry))
        self.pool_cap = 4096
        self.pool = <uint8_t *>malloc(self.pool_cap)
        if self.buf == NULL or self.table == NULL or self.pool == NULL:
            raise MemoryError()
        for i in range(self.table_size):
            self.table[i].off = -1
        self.line = 1
        self._new_batch()

    def __dealloc__(self):
        free(self.buf)
        free(self.table)
        free(self.pool)

    cdef _new_batch(self):
        self.batch_array = np.empty(self.batch, self.dtype)
        cdef uint8_t[::1] raw = self.batch_array.view(np.uint8)
        self.rows = <Event *>&raw[0]
        self.nrows = 0
        memset(self.kinds, 0, sizeof(self.kinds))
        self.failed = 0

    def take_batch(self):
        """The rows read so far (a full batch, or the last one), their number by kind,
        and how many are failed allocations; the next rows go to a fresh batch."""
        got = (self.batch_array[: self.nrows], [self.kinds[k] for k in range(16)], self.failed)
        self._new_batch()
        return got

    cdef inline void _count(self, int kind, int64_t pfn) noexcept nogil:
        self.kinds[kind & 15] += 1
        if kind == MM_PAGE_ALLOC and pfn < 0:
            self.failed += 1

    @property
    def lines(self):
        """Lines read so far (the line being stopped at not among them)."""
        return self.line - 1

    def span(self):
        """The bytes run() stopped at (REFUSED: the line; GFP_MISS: the gfp text)."""
        return (<char *>self.buf)[self.span_start : self.span_end]

    def error(self):
        return self.err

    def next_line(self):
        """Go past the line run() stopped at (REFUSED), read by the slow path."""
        self.start = self.span_end + 1
        self.line += 1

    def put(self, row):
        """Append a row read by the slow path (the batch has room: run() checks first)."""
        self.batch_array[self.nrows] = row
        self._count(row[0], row[2])
        self.nrows += 1

    def learn_gfp(self, bytes text, int64_t value):
        """Enter a gfp_flags text and its value (-1: unreadable)."""
        cdef Py_ssize_t n = len(text), i, j
        cdef const uint8_t *t = <const uint8_t *><char *>text
        cdef GfpEntry *old
        if 2 * (self.table_used + 1) > self.table_size:
            old = self.table
            self.table = <GfpEntry *>malloc(2 * self.table_size * sizeof(GfpEntry))
            if self.table == NULL:
                self.table = old
                raise MemoryError()
            for i in range(2 * self.table_size):
                self.table[i].off = -1
            for i in range(self.table_size):
                if old[i].off >= 0:
                    j = old[i].hash & (2 * self.table_size - 1)
                    while self.table[j].off >= 0:
                        j = (j + 1) & (2 * self.table_size - 1)
                    self.table[j] = old[i]
            free(old)
            self.table_size *= 2
        while self.pool_used + n > self.pool_cap:
            self.pool_cap *= 2
            self.pool = <uint8_t *>realloc(self.pool, self.pool_cap)
            if self.pool == NULL:
                raise MemoryError()
        memcpy(self.pool + self.pool_used, t, n)
        cdef uint64_t h = text_hash(t, n)
        j = h & (self.table_size - 1)
        while self.table[j].off >= 0:
            j = (j + 1) & (self.table_size - 1)
        self.table[j].off = self.pool_used
        self.table[j].len = n
        self.table[j].hash = h
        self.table[j].value = value
        self.pool_used += n
        self.table_used += 1

    cdef GfpEntry *gfp_lookup(self, const uint8_t *t, Py_ssize_t n) noexcept nogil:
        cdef uint64_t h = text_hash(t, n)
        cdef Py_ssize_t j = h & (self.table_size - 1)
        cdef GfpEntry *e
        while self.table[j].off >= 0:
            e = &self.table[j]
            if e.hash == h and e.len == n and memcmp(self.pool + e.off, t, n) == 0:
                return e
            j = (j + 1) & (self.table_size - 1)
        return NULL

    def feed(self, const uint8_t[::1] data):
        """Append a block of text (feed mode)."""
        cdef Py_ssize_t n = data.shape[0]
        if n == 0:
            return
        self._room(n)
        memcpy(self.buf + self.end, &data[0], n)
        self.end += n

    def finish(self):
        """No more input (feed mode): a last line without its newline is read too."""
        self.eof = True

    cdef int _room(self, Py_ssize_t n) except -1 nogil:
        # Room for n more bytes after end (and the newline a last line may need).
        cdef uint8_t *grown
        if self.start:
            memmove(self.buf, self.buf + self.start, self.end - self.start)
            self.end -= self.start
            self.span_start -= self.start
            self.span_end -= self.start
            self.start = 0
        if self.end + n > self.cap:
            grown = <uint8_t *>realloc(self.buf, self.end + n + 1)
            if grown == NULL:
                with gil:
                    raise MemoryError()
            self.buf = grown
            self.cap = self.end + n
        return 0

    cdef int _fill(self) except -1 nogil:
        # read(2) what fits (at least 1 MB of room); sets eof at the end of the file.
        cdef Py_ssize_t got
        self._room(1 << 20)
        while True:
            got = read(self.fd, self.buf + self.end, self.cap - self.end)
            if got >= 0:
                break
            if errno != EINTR:
                self.err = errno
                return 1
        if got == 0:
            self.eof = True
        self.end += got
        return 0

    cdef int _take_block(self) except -1 nogil:
        # The next block of the XzRing; sets eof at its end, err (its status) when it
        # ended badly.
        cdef size_t got
        cdef int status
        self._room(XZ_RING_BLOCK)
        got = xz_ring_take(self.xz.ring, self.buf + self.end)
        self.end += got
        if got == 0:
            status = xz_ring_status(self.xz.ring)
            if status != XZ_RING_END:
                self.err = status
                return 1
            self.eof = True
        return 0

    def run(self):
        """Read lines until the batch is full or a line needs Python; returns why it
        stopped (FULL, REFUSED, GFP_MISS, NEED_INPUT, EOF, READ_ERROR, XZ_ERROR)."""
        cdef int why
        with nogil:
            why = self._run()
        return why

    cdef int _run(self) except -1 nogil:
        cdef const uint8_t *q
        cdef Py_ssize_t line_end
        cdef int got
        while True:
            if self.nrows == self.batch:
                return S_FULL
            q = <const uint8_t *>memchr(self.buf + self.start, 10, self.end - self.start)
            if q == NULL:
                if self.fd >= 0 and not self.eof:
                    if self._fill():
                        return S_READ_ERROR
                    continue
                if self.xz is not None and not self.eof:
                    if self._take_block():
                        return S_XZ_ERROR
                    continue
                if not self.eof:
                    return S_NEED_INPUT
                if self.start == self.end:
                    return S_EOF
                self.buf[self.end] = 10         # the last line, unterminated
                self.end += 1
                continue
            line_end = q - self.buf
            got = self._line(self.start, line_end, &self.rows[self.nrows])
            if got == S_REFUSED:
                self.span_start, self.span_end = self.start, line_end
                return S_REFUSED
            if got == S_GFP_MISS:
                return S_GFP_MISS
            self.rows[self.nrows].line = self.line
            self._count(self.rows[self.nrows].kind, self.rows[self.nrows].pfn)
            self.nrows += 1
            self.line += 1
            self.start = line_end + 1

    cdef int _line(self, Py_ssize_t start, Py_ssize_t end, Event *row) noexcept nogil:
        # S_FULL (a row written), S_REFUSED or S_GFP_MISS (span set to the text).
        cdef const uint8_t *s = self.buf
        cdef const uint8_t *hit
        cdef Py_ssize_t p, q, f, n
        cdef int kind
        cdef int64_t pfn, order, mt, refill, cpu, gfp
        cdef double ts
        cdef bint null
        cdef int bad, nonzero
        cdef GfpEntry *e
        # The first ": mm_page_" on the line. The fields after it are read up to the
        # end of the line, so a line with a second one (in a task name before it, or
        # in the fields) is refused below.
        p = start
        while True:
            hit = <const uint8_t *>memchr(s + p, 58, end - p)
            if hit == NULL:
                return S_REFUSED
            p = hit - s
            if has(s, p, end, b": mm_page_", 10):
                break
            p += 1
        kind = kind_of(s, p + 2, end, &f)
        if kind == 0 or f + 23 > end:
            return S_REFUSED
        bad = nonzero = 0
        for q in range(f, f + 16):         # branch-free: this runs on every line
            bad |= HEXVAL[s[q]] & 0xF0
            nonzero |= s[q] ^ 48
        if bad:
            return S_REFUSED
        null = nonzero == 0
        if not has(s, f + 16, end, b" pfn=0x", 7):
            return S_REFUSED
        n = scan(s, f + 23, end, 16, &pfn)
        q = f + 23 + n
        if n == 0 or n > 12 or not has(s, q, end, b" order=", 7):
            return S_REFUSED
        n = scan(s, q + 7, end, 10, &order)
        q += 7 + n
        if n == 0 or n > 3 or order >= 64:
            return S_REFUSED
        mt = refill = -1
        gfp = 0
        if kind == MM_PAGE_FREE or kind == MM_PAGE_FREE_BATCHED:
            if q != end:
                return S_REFUSED
        else:
            if not has(s, q, end, b" migratetype=", 13):
                return S_REFUSED
            n = scan(s, q + 13, end, 10, &mt)
            q += 13 + n
            if n == 0 or n > 3 or mt >= 64:
                return S_REFUSED
            if kind == MM_PAGE_PCPU_DRAIN:
                if q != end:
                    return S_REFUSED
            elif kind == MM_PAGE_ALLOC_ZONE_LOCKED:
                if not has(s, q, end, b" percpu_refill=", 15) or q + 16 != end:
                    return S_REFUSED
                refill = hexval(s[q + 15])
                if refill > 1:
                    return S_REFUSED
            else:
                if not has(s, q, end, b" gfp_flags=", 11) or end <= q + 11:
                    return S_REFUSED
                e = self.gfp_lookup(s + q + 11, end - q - 11)
                if e == NULL:
                    self.span_start, self.span_end = q + 11, end
                    return S_GFP_MISS
                gfp = e.value
                if gfp < 0:
                    return S_REFUSED
        if null:
            if kind != MM_PAGE_ALLOC or pfn != 0:
                return S_REFUSED
            pfn = -1
        if not prefix(s, start, p, &cpu, &ts):
            return S_REFUSED
        row.kind = kind
        row.cpu = <uint16_t>cpu
        row.pfn = pfn
        row.order = <int8_t>order
        row.migratetype = <int8_t>mt
        row.gfp = <uint32_t>gfp
        row.timestamp = ts
        row.fallback_order = -1
        row.fallback_migratetype = -1
        row.percpu_refill = <int8_t>refill
        row.change_ownership = -1
        row.kswapd = by_kswapd(s, start, p)
        return S_FULL
