# Threads: eight threads each building and dropping bytearrays of 4 KiB to 1 MiB
# (glibc's per-thread arenas, mmap'd above its threshold), 400 rounds.
import sys
import threading

rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 400


def work(seed):
    for r in range(rounds):
        held = [bytearray((4096 << ((r + seed + k) % 9))) for k in range(8)]
        del held


threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
