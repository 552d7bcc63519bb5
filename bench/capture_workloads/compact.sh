#!/bin/sh
# Fragment with small files' page cache, then compact all zones (migration, compaction drains).
d=$(mktemp -d ${TMPDIR:-/tmp}/pcpemu-compact.XXXX)
python3 -c "
import os, sys
d = sys.argv[1]
for i in range(20000):
    with open(os.path.join(d, f'f{i}'), 'wb') as f: f.write(b'y' * 4096)
for i in range(0, 20000, 2): os.unlink(os.path.join(d, f'f{i}'))
" $d
echo 1 > /proc/sys/vm/compact_memory
rm -rf $d
