#!/bin/sh
# A compressor: 24 MiB of random bytes as base64 text, compressed with xz -1 -T2 and
# decompressed.
d=$(mktemp -d)
head -c 24M /dev/urandom | base64 > $d/a
xz -1 -T2 -k $d/a && xz -dc $d/a.xz > /dev/null
rm -rf $d
