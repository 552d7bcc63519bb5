#!/bin/sh
# Slab and pipes: 60k files made, listed and removed in tmpfs; 2 GiB through a pipe.
d=$(mktemp -d /dev/shm/pcpemu-slab.XXXX)
python3 -c "
import os, sys
d = sys.argv[1]
for i in range(60000): open(os.path.join(d, f'f{i}'), 'w').close()
for e in os.scandir(d): e.stat()
for i in range(60000): os.unlink(os.path.join(d, f'f{i}'))
" $d
rmdir $d
dd if=/dev/zero bs=1M count=2048 status=none | cat > /dev/null
