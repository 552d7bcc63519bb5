# The fast path of pcpemu.ftrace: lines in the kernel's own ``trace`` format
# (print_trace_fmt() in kernel/trace/trace_output.c, TP_printk of
# include/trace/events/kmem.h), read in C. Every byte that carries a value is
# checked; a line this path does not accept goes to the slow path in ftrace.py.

from libc.stdint cimport int64_t, uint8_t
from libc.string cimport memchr


cdef extern from "string.h" nogil:
    void *memmem(const void *haystack, size_t haystacklen, const void *needle, size_t needlelen)

import numpy as np

from .errors import UnknownGfpError
from .kernel.gfp import parse_gfp

# Kinds, as pcpemu.ftrace numbers them.
cdef enum:
    MM_PAGE_ALLOC = 1
    MM_PAGE_FREE = 2
    MM_PAGE_FREE_BATCHED = 3
    MM_PAGE_PCPU_DRAIN = 4
    MM_PAGE_ALLOC_ZONE_LOCKED = 5

# irq-info flag characters (and the padding of %5lu).
cdef bint FLAG_OK[256]
for _c in range(256):
    FLAG_OK[_c] = _c in b" .DdbXNnpZzHhs0123456789abcdef"

_NAMES = {MM_PAGE_ALLOC: b"alloc: page=", MM_PAGE_FREE: b"free: page=",
          MM_PAGE_FREE_BATCHED: b"free_batched: page=", MM_PAGE_PCPU_DRAIN: b"pcpu_drain: page=",
          MM_PAGE_ALLOC_ZONE_LOCKED: b"alloc_zone_locked: page="}
cdef bytes N_ALLOC = _NAMES[MM_PAGE_ALLOC]
cdef bytes N_FREE = _NAMES[MM_PAGE_FREE]
cdef bytes N_BATCHED = _NAMES[MM_PAGE_FREE_BATCHED]
cdef bytes N_DRAIN = _NAMES[MM_PAGE_PCPU_DRAIN]
cdef bytes N_LOCKED = _NAMES[MM_PAGE_ALLOC_ZONE_LOCKED]


cdef inline bint has(const uint8_t *s, Py_ssize_t i, Py_ssize_t end, bytes text):
    cdef Py_ssize_t n = len(text), j
    cdef const uint8_t *t = <const uint8_t *>(<char *>text)
    if i < 0 or i + n > end:
        return False
    for j in range(n):
        if s[i + j] != t[j]:
            return False
    return True


cdef inline int hexval(uint8_t c) noexcept nogil:
    if 48 <= c <= 57:
        return c - 48
    if 97 <= c <= 102:
        return c - 87
    return 99


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


cdef int kind_of(const uint8_t *s, Py_ssize_t p, Py_ssize_t end, Py_ssize_t *fields):
    # p is at "mm_page_"; sets *fields to the first byte after "page=".
    cdef Py_ssize_t q = p + 8
    if has(s, q, end, N_ALLOC):
        fields[0] = q + len(N_ALLOC)
        return MM_PAGE_ALLOC
    if has(s, q, end, N_FREE):
        fields[0] = q + len(N_FREE)
        return MM_PAGE_FREE
    if has(s, q, end, N_BATCHED):
        fields[0] = q + len(N_BATCHED)
        return MM_PAGE_FREE_BATCHED
    if has(s, q, end, N_DRAIN):
        fields[0] = q + len(N_DRAIN)
        return MM_PAGE_PCPU_DRAIN
    if has(s, q, end, N_LOCKED):
        fields[0] = q + len(N_LOCKED)
        return MM_PAGE_ALLOC_ZONE_LOCKED
    return 0


cdef bint prefix(const uint8_t *s, Py_ssize_t start, Py_ssize_t p, int64_t *cpu, double *ts):
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


def newlines(bytes buf):
    """The index of every b"\\n" in buf (memchr, not a numpy compare over every byte)."""
    cdef const char *s = <const char *>buf
    cdef Py_ssize_t n = len(buf), count = 0, i = 0
    cdef const char *q
    while i < n:
        q = <const char *>memchr(s + i, 10, n - i)
        if q == NULL:
            break
        count += 1
        i = q - s + 1
    out = np.empty(count, np.int64)
    cdef int64_t[::1] o = out
    i = 0
    count = 0
    while i < n:
        q = <const char *>memchr(s + i, 10, n - i)
        if q == NULL:
            break
        o[count] = q - s
        count += 1
        i = q - s + 1
    return out


def fast_lines(bytes buf, const int64_t[::1] nl, dict gfp_cache):
    """Read the lines this path accepts.

    :param buf: the text; line i ends at the newline at ``nl[i]``.
    :return: (line indexes, kind, cpu, pfn, order, migratetype, gfp, timestamp,
        percpu_refill) of the accepted lines, as arrays.
    """
    cdef const uint8_t *s = <const uint8_t *>(<char *>buf)
    cdef Py_ssize_t nlines = nl.shape[0], i, start = 0, end, p, q, found, f
    cdef Py_ssize_t nrows = 0, n
    cdef int kind
    cdef int64_t pfn, order, mt, refill, cpu, gfp
    cdef double ts
    cdef bint null
    cdef const uint8_t *hit
    cols = (np.empty(nlines, np.uint8), np.empty(nlines, np.uint16), np.empty(nlines, np.int64),
            np.empty(nlines, np.int8), np.empty(nlines, np.int8), np.empty(nlines, np.uint32),
            np.empty(nlines, np.float64), np.empty(nlines, np.int8))
    cdef uint8_t[::1] o_kind = cols[0]
    cdef unsigned short[::1] o_cpu = cols[1]
    cdef int64_t[::1] o_pfn = cols[2]
    cdef signed char[::1] o_order = cols[3]
    cdef signed char[::1] o_mt = cols[4]
    cdef unsigned int[::1] o_gfp = cols[5]
    cdef double[::1] o_ts = cols[6]
    cdef signed char[::1] o_refill = cols[7]
    accepted = np.empty(nlines, np.int64)
    cdef int64_t[::1] acc = accepted
    for i in range(nlines):
        end = nl[i]
        # Exactly one ": mm_page_" on the line.
        found = -1
        hit = <const uint8_t *>memmem(s + start, end - start, b": mm_page_", 10)
        if hit != NULL:
            found = hit - s
            if memmem(hit + 1, end - found - 1, b": mm_page_", 10) != NULL:
                found = -2
        p, start = found, end + 1
        if p < 0:
            continue
        kind = kind_of(s, p + 2, end, &f)
        if kind == 0 or f + 23 > end:
            continue
        null = True
        for q in range(f, f + 16):
            if hexval(s[q]) > 15:
                kind = 0
            elif s[q] != 48:
                null = False
        if kind == 0 or not has(s, f + 16, end, b" pfn=0x"):
            continue
        n = scan(s, f + 23, end, 16, &pfn)
        q = f + 23 + n
        if n == 0 or n > 12 or not has(s, q, end, b" order="):
            continue
        n = scan(s, q + 7, end, 10, &order)
        q += 7 + n
        if n == 0 or n > 3 or order >= 64:
            continue
        mt = refill = -1
        gfp = 0
        if kind == MM_PAGE_FREE or kind == MM_PAGE_FREE_BATCHED:
            if q != end:
                continue
        else:
            if not has(s, q, end, b" migratetype="):
                continue
            n = scan(s, q + 13, end, 10, &mt)
            q += 13 + n
            if n == 0 or n > 3 or mt >= 64:
                continue
            if kind == MM_PAGE_PCPU_DRAIN:
                if q != end:
                    continue
            elif kind == MM_PAGE_ALLOC_ZONE_LOCKED:
                if not has(s, q, end, b" percpu_refill=") or q + 16 != end:
                    continue
                refill = hexval(s[q + 15])
                if refill > 1:
                    continue
            else:
                if not has(s, q, end, b" gfp_flags=") or end <= q + 11:
                    continue
                tok = buf[q + 11 : end]
                g = gfp_cache.get(tok)
                if g is None:
                    try:
                        g = parse_gfp(tok.decode("ascii"))
                    except (UnknownGfpError, UnicodeDecodeError):
                        g = -1  # the slow path reports it
                    gfp_cache[tok] = g
                gfp = g
                if gfp < 0:
                    continue
        if null:
            if kind != MM_PAGE_ALLOC or pfn != 0:
                continue
            pfn = -1
        if not prefix(s, nl[i - 1] + 1 if i else 0, p, &cpu, &ts):
            continue
        o_kind[nrows] = kind
        o_cpu[nrows] = <unsigned short>cpu
        o_pfn[nrows] = pfn
        o_order[nrows] = <signed char>order
        o_mt[nrows] = <signed char>mt
        o_gfp[nrows] = <unsigned int>gfp
        o_ts[nrows] = ts
        o_refill[nrows] = <signed char>refill
        acc[nrows] = i
        nrows += 1
    return (accepted[:nrows],) + tuple(c[:nrows] for c in cols)
