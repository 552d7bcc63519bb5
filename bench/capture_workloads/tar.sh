#!/bin/sh
# Archives: /usr/lib/python3* packed with gzip to a temporary file, unpacked beside it, removed.
d=$(mktemp -d)
tar -czf $d/a.tgz -C /usr/lib $(cd /usr/lib && ls -d python3* | head -n 1) 2>/dev/null
mkdir $d/x && tar -xzf $d/a.tgz -C $d/x
rm -rf $d
