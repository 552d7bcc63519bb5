# Anonymous faults: map, touch every 4 KiB page, unmap, three times.
#   anon_faults.py nohuge [MiB]   4 KiB faults (MADV_NOHUGEPAGE keeps THP out), default 512 MiB
#   anon_faults.py huge [MiB]     THP faults (MADV_HUGEPAGE), default 1024 MiB
import mmap, sys
if len(sys.argv) < 2 or sys.argv[1] not in ("nohuge", "huge"):
    sys.exit("usage: anon_faults.py nohuge|huge [MiB]")
huge = sys.argv[1] == "huge"
size = (int(sys.argv[2]) if len(sys.argv) > 2 else 1024 if huge else 512) << 20
for _ in range(3):
    m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    m.madvise(mmap.MADV_HUGEPAGE if huge else mmap.MADV_NOHUGEPAGE)
    for off in range(0, size, 4096):
        m[off] = 1
    m.close()
