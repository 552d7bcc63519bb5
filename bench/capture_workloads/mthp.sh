#!/bin/sh
# Multi-size THP: anonymous faults with some sizes on and the PMD size off, then the
# settings as they were.  mthp.sh [MiB] [KiB sizes]: by default 512 MiB with 16, 32, 64
# and 128 KiB on (orders 2-5: two with pcp lists, two without).
t=/sys/kernel/mm/transparent_hugepage
on=${2:-16 32 64 128}
sizes="16 32 64 128 2048"
for s in $sizes; do eval "old_$s=\$(sed 's/.*\[\(.*\)\].*/\1/' $t/hugepages-${s}kB/enabled)"; done
restore() { for s in $sizes; do eval "echo \$old_$s" > $t/hugepages-${s}kB/enabled; done; }
trap restore EXIT INT TERM
for s in 16 32 64 128; do echo never > $t/hugepages-${s}kB/enabled; done
for s in $on; do echo always > $t/hugepages-${s}kB/enabled; done
echo never > $t/hugepages-2048kB/enabled
python3 $(dirname "$0")/anon_faults.py huge ${1:-512}
