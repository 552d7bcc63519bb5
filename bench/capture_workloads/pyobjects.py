# Small kernel and user objects: build and drop Python containers of many sizes, 3 times.
import sys
n = int(sys.argv[1]) if len(sys.argv) > 1 else 2_000_000
for _ in range(3):
    d = {i: [i] * (i % 7) for i in range(n)}
    del d
