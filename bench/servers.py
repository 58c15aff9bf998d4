#!/usr/bin/env python3
"""ocpm benchmark: one opencode server against several (servers = N), real opencode, offline model.

Run by bench/servers.sh, once per server count against the same stack setup. Each run sends K new
sessions at once, for each K, twice: each session in a workspace of its own (as real users have:
opencode starts an instance per directory, the work one single-threaded server does for all of
them), then all in one shared workspace. For each it prints the wall time, p50/p95 of one message,
errors (and why) and the peak RSS of every opencode process together; the last run prints the ratio
of each wall time to the first run's (goal: 2 servers at least 1.6x faster, 0 errors at 64).
"""
import json
import os
import sys
import threading
import time

from benchlib import at_once, pct
from server import Client, opencode_rss_kb


def burst(port, k, binary, tag, shared):
    times, why = [], {}
    lock = threading.Lock()

    def one(i):
        cl = Client(port)
        sid = "%s%d" % (tag, i)
        cl.call("POST", "/api/sessions", {"id": sid, "workspace": tag + "shared" if shared else sid})
        t0 = time.perf_counter()
        st, body = cl.call("POST", "/api/sessions/%s/messages" % sid, {"text": "burst %d" % i})
        ms = (time.perf_counter() - t0) * 1000
        ok = st == 200 and body["execution"]["status"] == "succeeded"
        with lock:
            if ok:
                times.append(ms)
                return
            err = (body or {}).get("error") or {}
            ex = (body or {}).get("execution") or {}
            key = "%d %s" % (st, err.get("code") or ex.get("status") or "?")
            if ex.get("error"):
                key += ": " + ex["error"][:80]
            why[key] = why.get(key, 0) + 1

    wall, peak_kb = at_once(k, one, lambda: opencode_rss_kb(binary))
    return {"wall": wall, "errors": k - len(times), "why": why, "p50": pct(times, 50) if times else None,
            "p95": pct(times, 95) if times else None, "rss_mb": peak_kb / 1024.0}


def show(servers, k, case, r):
    p = ("p50 %6.2f s  p95 %6.2f s" % (r["p50"] / 1000, r["p95"] / 1000)) if r["p50"] is not None else "p50 -  p95 -"
    print("  servers=%d  %3d new sessions, %-16s wall %6.2f s  %s  errors %2d  peak opencode RSS %7.1f MB" % (
        servers, k, case, r["wall"], p, r["errors"], r["rss_mb"]))
    for key, n in sorted(r["why"].items()):
        print("      failed: %3d x %s" % (n, key))


def main():
    servers, port, binary, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    sizes = [int(x) for x in os.environ.get("BENCH_SESSIONS", "32 64").split()]
    # Every server warm first (its first message loads opencode's plugins in its own home).
    warm = [threading.Thread(target=burst, args=(port, 1, binary, "warm%d_" % i, False)) for i in range(servers)]
    for w in warm:
        w.start()
    for w in warm:
        w.join()
    rows = {}
    for k in sizes:
        for case, shared in (("own workspaces", False), ("shared workspace", True)):
            r = burst(port, k, binary, "s%d%s_" % (k, "sh" if shared else "own"), shared)
            rows["%d %s" % (k, case)] = r
            show(servers, k, case, r)
    data = {}
    if os.path.exists(out):
        with open(out) as f:
            data = json.load(f)
    data[str(servers)] = rows
    with open(out, "w") as f:
        json.dump(data, f)
    base = data.get("1")
    if servers != 1 and base:
        for key, r in rows.items():
            b = base.get(key)
            if b:
                print("  %-28s 1 server / %d servers: wall ratio %.2f%s   errors %d -> %d   peak RSS ratio %.2f" % (
                    key, servers, b["wall"] / r["wall"], " (goal >= 1.6)" if "own" in key else "",
                    b["errors"], r["errors"], r["rss_mb"] / max(b["rss_mb"], 1)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
