#!/bin/sh
# Direct I/O: 256 MiB written and read with O_DIRECT (no page cache), then removed.
f=${TMPDIR:-/var/tmp}/pcpemu-odirect.tmp
dd if=/dev/zero of=$f bs=1M count=${1:-256} oflag=direct status=none
dd if=$f of=/dev/null bs=1M iflag=direct status=none
rm -f $f
