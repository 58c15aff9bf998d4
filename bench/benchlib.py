"""Shared pieces of the bench/*.py programs (stdlib only), and the one definition of the result
lines bench/all.sh gathers into its table:

  FIGURE<TAB>key<TAB>label<TAB>ocpm<TAB>baseline<TAB>ratio<TAB>goal<TAB>met

printed by figure() here, or from a shell script by lib.sh's figure(), which calls this file:
  python3 benchlib.py figure KEY LABEL OCPM BASELINE UNIT GOAL   (GOAL: "ocpm < 1", "ratio >= 0.5" or -)
  python3 benchlib.py table < lines                              (the table of every FIGURE line read)
"""
import operator
import os
import sys
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


def responders(mpid):
    """(RSS in kB, open fds) of the manager's FastCGI responders together: its children started with
    --responder (ocpmd forks and execs itself so; opencode children are left out)."""
    rss = fds = 0
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open("/proc/%s/stat" % p) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) != mpid:
                        continue
                with open("/proc/%s/cmdline" % p, "rb") as f:
                    if b"--responder" not in f.read():
                        continue
                r, n = proc_stats(int(p))
                rss, fds = rss + r, fds + n
            except (OSError, ValueError, IndexError):
                pass
    return rss, fds


OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def _num(v):
    """v as a float, or None when it is not a number (text such as "not run")."""
    if isinstance(v, (int, float)):
        return float(v)
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _fmt(v, unit=""):
    """A measured value for the table: about three significant digits, and its unit."""
    x = _num(v)
    if x is None:
        return "-" if v is None or v == "" else str(v)
    if x != x:
        return "nan"
    digits = 0 if abs(x) >= 100 or x == 0 else 1 if abs(x) >= 10 else 2 if abs(x) >= 1 else 3
    return ("%.*f" % (digits, x)) + (" " + unit if unit else "")


def figure(key, label, ocpm, baseline=None, unit="", goal=None, ratio=None, met=None, out=None):
    """Print one FIGURE line. ocpm and baseline are numbers (or text, printed as is); the ratio is
    ocpm / baseline, both measured in the same run, unless given. goal is (on, op, limit) with on
    "ocpm" or "ratio" and op one of < <= > >=, or None; met is worked out from it unless given
    (yes, no, or - when there is no goal or no number to judge)."""
    o, b = _num(ocpm), _num(baseline)
    if ratio is None and o is not None and b:
        ratio = o / b
    goal_text = "-"
    if goal:
        on, op, limit = goal
        goal_text = ("%s %g %s" % (op, limit, unit)).strip() if on == "ocpm" else "ratio %s %g" % (op, limit)
        if met is None:
            x = o if on == "ocpm" else _num(ratio)
            met = "-" if x is None or x != x else "yes" if OPS[op](x, limit) else "no"
    r = _num(ratio)
    ratio_text = ("%.3f" % r if abs(r) < 0.1 else "%.2f" % r) if r is not None else (ratio or "-")
    cells = [key, label, _fmt(ocpm, unit), _fmt(baseline, unit), ratio_text, goal_text, met or "-"]
    # A tab or newline inside a cell would break the line's shape.
    print("\t".join(["FIGURE"] + [str(c).replace("\t", " ").replace("\n", " ") for c in cells]),
          file=out or sys.stdout, flush=True)


def table(lines, out=None):
    """The FIGURE lines among lines as one table (markdown, padded so it reads in a terminal too)."""
    rows = [["figure", "ocpm", "baseline", "ratio", "goal", "met"]]
    for line in lines:
        f = line.rstrip("\n").split("\t")
        if f[0] == "FIGURE" and len(f) == 8:
            rows.append([f[2]] + f[3:])
    width = [max(len(r[i]) for r in rows) for i in range(6)]
    out = out or sys.stdout
    for n, r in enumerate(rows):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, width)) + " |", file=out)
        if n == 0:
            print("|" + "|".join("-" * (w + 2) for w in width) + "|", file=out)


def main(argv):
    if len(argv) == 8 and argv[1] == "figure":
        key, label, ocpm, baseline, unit, goal = argv[2:]
        g = goal.split()
        if goal not in ("", "-") and (len(g) != 3 or g[0] not in ("ocpm", "ratio") or g[1] not in OPS):
            print("benchlib: goal must be 'ocpm|ratio OP LIMIT' or -, not %r" % goal, file=sys.stderr)
            return 2
        figure(key, label, ocpm if ocpm != "-" else None, baseline if baseline != "-" else None, unit,
               (g[0], g[1], float(g[2])) if len(g) == 3 else None)
        return 0
    if len(argv) == 2 and argv[1] == "table":
        table(sys.stdin)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
