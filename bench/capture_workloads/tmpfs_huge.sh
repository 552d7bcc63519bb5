#!/bin/sh
# Huge pages in tmpfs: a tmpfs mounted huge=always, 512 MiB written, read, removed.
d=$(mktemp -d)
mount -t tmpfs -o huge=always,size=1G pcpemu-thp $d
dd if=/dev/zero of=$d/f bs=1M count=${1:-512} status=none
cat $d/f > /dev/null
umount $d; rmdir $d
