#!/bin/sh
# Many short processes.
i=0
while [ $i -lt ${1:-1500} ]; do /bin/true; i=$((i+1)); done
