#!/bin/sh
# 512 hugetlb pages reserved and given back (order-9 allocations and frees); the
# pool is left as it was.
was=$(cat /proc/sys/vm/nr_hugepages)
echo $((was + 512)) > /proc/sys/vm/nr_hugepages; sleep 0.5; echo $was > /proc/sys/vm/nr_hugepages
