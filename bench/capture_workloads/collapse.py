# THP made by collapse: 4 KiB faults over 256 MiB, then MADV_COLLAPSE of the whole range
# (order-9 allocations that replace the 4 KiB pages, which are freed), three times.
import mmap
import sys

MADV_COLLAPSE = 25
size = (int(sys.argv[1]) if len(sys.argv) > 1 else 256) << 20
for _ in range(3):
    m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    m.madvise(mmap.MADV_NOHUGEPAGE)
    for off in range(0, size, 4096):
        m[off] = 1
    m.madvise(mmap.MADV_HUGEPAGE)
    m.madvise(MADV_COLLAPSE)
    m.close()
