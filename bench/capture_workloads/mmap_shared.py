# A shared file mapping: 256 MiB of a file written through MAP_SHARED, msync'ed (writeback),
# unmapped, removed.
import mmap
import os
import sys
import tempfile

size = (int(sys.argv[1]) if len(sys.argv) > 1 else 256) << 20
fd, path = tempfile.mkstemp(prefix="pcpemu-mmap-")
os.ftruncate(fd, size)
m = mmap.mmap(fd, size, flags=mmap.MAP_SHARED)
for off in range(0, size, 4096):
    m[off] = 1
m.flush()
m.close()
os.close(fd)
os.unlink(path)
