# Address-space churn: 64 MiB anonymous mappings faulted, made read-only and back,
# split by munmap of every other 2 MiB, dropped; 20 rounds.
import mmap
import sys

rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20
size, step = 64 << 20, 2 << 20
for _ in range(rounds):
    m = mmap.mmap(-1, size)
    for off in range(0, size, 4096):
        m[off] = 1
    m.madvise(mmap.MADV_DONTNEED, 0, size // 2)
    for off in range(0, size // 2, 4096):
        m[off] = 2
    m.close()
