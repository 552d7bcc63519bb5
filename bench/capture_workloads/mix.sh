#!/bin/sh
# A mix: all of the above at once.
w=$(dirname "$0")
python3 $w/anon_faults.py nohuge 256 & python3 $w/anon_faults.py huge 512 & sh $w/pagecache.sh 256 & sh $w/shortprocs.sh 500 & sh $w/compile.sh &
wait
