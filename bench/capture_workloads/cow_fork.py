# Copy-on-write after fork: a parent touches 256 MiB, four children each write every page
# of their quarter (a copy per page), then exit.
import mmap
import os
import sys

size = (int(sys.argv[1]) if len(sys.argv) > 1 else 256) << 20
m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
m.madvise(mmap.MADV_NOHUGEPAGE)
for off in range(0, size, 4096):
    m[off] = 1
kids = []
for k in range(4):
    pid = os.fork()
    if pid == 0:
        for off in range(k * size // 4, (k + 1) * size // 4, 4096):
            m[off] = 2
        os._exit(0)
    kids.append(pid)
for pid in kids:
    os.waitpid(pid, 0)
