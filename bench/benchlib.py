"""Shared pieces of the bench/*.py programs (stdlib only)."""
import os


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
