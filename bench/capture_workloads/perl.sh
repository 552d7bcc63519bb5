#!/bin/sh
# A scripting runtime: perl building a 600,000-entry hash and sorting its keys.
perl -e 'my %h; $h{$_} = "x" x ($_ % 50) for 1..600000; my @k = sort keys %h; print scalar(@k), "\n"' > /dev/null
