# THP faults: 2 MiB-aligned anonymous regions with MADV_HUGEPAGE, touched once per 4 KiB.
import mmap, sys
size = int(sys.argv[1]) << 20 if len(sys.argv) > 1 else 1024 << 20
for _ in range(3):
    m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    m.madvise(mmap.MADV_HUGEPAGE)
    for off in range(0, size, 4096):
        m[off] = 1
    m.close()
