"""Shared pieces of the bench/*.py programs (stdlib only)."""
import os
import threading
import time


def pct(xs, p):
    """The p-th percentile of xs, nearest rank; nan for no values."""
    xs = sorted(xs)
    if not xs:
        return float("nan")
    return xs[max(0, min(len(xs) - 1, int(round(p / 100.0 * len(xs) + 0.5)) - 1))]


def rss_kb(pid):
    """Resident memory of a process, in kB (0 when it is gone)."""
    try:
        with open("/proc/%s/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def proc_stats(pid):
    """(RSS in kB, open file descriptors) of a process."""
    return rss_kb(pid), len(os.listdir("/proc/%d/fd" % pid))


def at_once(k, one, sample=None):
    """Run one(i) for i in range(k), each in a thread of its own, all at once. While they run,
    sample() is read every 100 ms and its largest value kept. Returns (wall seconds, that peak)."""
    peak = [0]
    stop = threading.Event()

    def sampler():
        while sample and not stop.is_set():
            peak[0] = max(peak[0], sample())
            time.sleep(0.1)

    th = threading.Thread(target=sampler)
    th.start()
    t0 = time.perf_counter()
    workers = [threading.Thread(target=one, args=(i,)) for i in range(k)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall = time.perf_counter() - t0
    stop.set()
    th.join()
    return wall, peak[0]
