#!/bin/sh
# Swap: a 1 GiB swap file and a memory cgroup of 128 MiB (v1's memory controller, else
# v2's) in which 384 MiB of anonymous memory is written twice (swap-out and swap-in),
# then everything as it was.
f=${TMPDIR:-/tmp}/pcpemu-swap.$$
if [ -d /sys/fs/cgroup/memory ]; then
  g=/sys/fs/cgroup/memory/pcpemu-swap.$$; limit=memory.limit_in_bytes; tasks=tasks
else
  g=/sys/fs/cgroup/pcpemu-swap.$$; limit=memory.max; tasks=cgroup.procs
fi
cleanup() { swapoff $f 2>/dev/null; rm -f $f; rmdir $g 2>/dev/null; }
trap cleanup EXIT INT TERM
dd if=/dev/zero of=$f bs=1M count=1024 status=none; chmod 600 $f; mkswap -q $f; swapon $f
mkdir $g; echo $((128 << 20)) > $g/$limit
sh -c "echo \$\$ > $g/$tasks; exec python3 -c '
import mmap
m = mmap.mmap(-1, 384 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS); m.madvise(mmap.MADV_NOHUGEPAGE)
for r in (1, 2):
    for off in range(0, 384 << 20, 4096): m[off] = r
'"
