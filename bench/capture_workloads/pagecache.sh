#!/bin/sh
# Page cache: write a file, drop it from the cache, read it back, delete it.
f=${TMPDIR:-/tmp}/pcpemu-pagecache.tmp
dd if=/dev/zero of=$f bs=1M count=${1:-512} conv=fsync status=none
echo 1 > /proc/sys/vm/drop_caches
cat $f > /dev/null
rm -f $f
