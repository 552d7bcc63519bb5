#!/bin/sh
# Shared memory: write a 512 MiB file on tmpfs (/dev/shm), read it, delete it.
f=/dev/shm/pcpemu-shmem.tmp
dd if=/dev/zero of=$f bs=1M count=${1:-512} status=none
cat $f > /dev/null
rm -f $f
