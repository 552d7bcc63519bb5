#!/bin/sh
# Git: a full clone of this repository (no hard links), every commit's patch read, removed.
d=$(mktemp -d)
git clone -q --no-local "$(dirname "$0")/../.." $d/r
git -C $d/r log -p > /dev/null
rm -rf $d
