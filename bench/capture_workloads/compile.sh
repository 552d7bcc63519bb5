#!/bin/sh
# A compile: the Cython-generated C of pcpemu's trace reader (after a build), -O2.
d=$(mktemp -d)
inc=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
np=$(python3 -c 'import numpy; print(numpy.get_include())')
gcc -O2 -fPIC -I$inc -I$np -c $(dirname "$0")/../../pcpemu/_core/_ftrace.c -o $d/f.o
rm -rf $d
