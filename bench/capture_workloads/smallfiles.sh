#!/bin/sh
# Many small files: write 4000 files of 1-64 KiB, drop them from the page cache, read them back, delete them.
d=$(mktemp -d)
i=0
while [ $i -lt ${1:-4000} ]; do head -c $(( (i % 64 + 1) * 1024 )) /dev/zero > $d/f$i; i=$((i+1)); done
sync
echo 1 > /proc/sys/vm/drop_caches
cat $d/* > /dev/null
rm -rf $d
