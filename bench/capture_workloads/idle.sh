#!/bin/sh
# Next to nothing for 12 s: the vmstat worker's decay on a quiet machine.
sleep 12
