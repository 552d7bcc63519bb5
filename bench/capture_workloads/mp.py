# A process pool: four workers (fork) mapping over 2,000 tasks that each build and
# drop a 256 KiB list.
import multiprocessing


def task(i):
    return sum([i] * 32768)


if __name__ == "__main__":
    with multiprocessing.get_context("fork").Pool(4) as pool:
        pool.map(task, range(2000))
