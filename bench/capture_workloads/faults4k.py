# 4 KiB anonymous faults: map, touch every page, unmap; MADV_NOHUGEPAGE keeps THP out.
import mmap, sys
size = int(sys.argv[1]) << 20 if len(sys.argv) > 1 else 512 << 20
for _ in range(3):
    m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    m.madvise(mmap.MADV_NOHUGEPAGE)
    for off in range(0, size, 4096):
        m[off] = 1
    m.close()
