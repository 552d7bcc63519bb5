#!/bin/sh
# 1 GiB of page cache read in, then dropped: a flood of frees.
dd if=/dev/zero of=${TMPDIR:-/tmp}/pcpemu-drop.$$ bs=1M count=1024 status=none; sync
echo 3 > /proc/sys/vm/drop_caches; cat ${TMPDIR:-/tmp}/pcpemu-drop.$$ > /dev/null; echo 1 > /proc/sys/vm/drop_caches
rm -f ${TMPDIR:-/tmp}/pcpemu-drop.$$
