#!/bin/sh
# 1 GiB written and read twice in a memory cgroup limited to 256 MiB: reclaim inside
# the cgroup (cgroup v1's memory controller, else v2's).
f=${TMPDIR:-/tmp}/pcpemu-memcg.$$
if [ -d /sys/fs/cgroup/memory ]; then
  g=/sys/fs/cgroup/memory/pcpemu-memcg.$$; mkdir $g; echo $((256 << 20)) > $g/memory.limit_in_bytes; tasks=$g/tasks
else
  g=/sys/fs/cgroup/pcpemu-memcg.$$; mkdir $g; echo $((256 << 20)) > $g/memory.max; tasks=$g/cgroup.procs
fi
sh -c "echo \$\$ > $tasks; dd if=/dev/zero of=$f bs=1M count=1024 status=none; cat $f > /dev/null; cat $f > /dev/null"
rm -f $f; rmdir $g
