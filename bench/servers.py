#!/usr/bin/env python3
"""ocpm benchmark: one opencode server against several (servers = N), real opencode, offline model.

Run by bench/servers.sh, once per server count against the same stack setup. Each run sends K new
sessions at once (each with its own workspace, as real users have: opencode starts an instance per
directory, the single-threaded work one server does for all of them), for each K, and prints the
wall time, errors and the peak RSS of every opencode process together; the last run prints the
ratio of each figure to the first run's (goal: 2 servers at least 1.6x faster at 32 and 64).
"""
import json
import os
import sys
import threading
import time

from server import Client, opencode_rss_kb


def burst(port, k, binary, tag):
    peak = [0]
    stop = threading.Event()

    def sampler():
        while not stop.is_set():
            peak[0] = max(peak[0], opencode_rss_kb(binary))
            time.sleep(0.1)

    results = []
    why = {}
    lock = threading.Lock()

    def one(i):
        cl = Client(port)
        sid = "%s%d" % (tag, i)
        cl.call("POST", "/api/sessions", {"id": sid, "workspace": sid})
        st, body = cl.call("POST", "/api/sessions/%s/messages" % sid, {"text": "burst %d" % i})
        ok = st == 200 and body["execution"]["status"] == "succeeded"
        with lock:
            results.append(ok)
            if not ok:
                err = (body or {}).get("error") or {}
                ex = (body or {}).get("execution") or {}
                k = "%d %s" % (st, err.get("code") or ex.get("status") or "?")
                if ex.get("error"):
                    k += ": " + ex["error"][:80]
                why[k] = why.get(k, 0) + 1

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
    for k2, n in sorted(why.items()):
        print("    failed: %3d x %s" % (n, k2))
    return wall, k - sum(results), peak[0] / 1024.0


def main():
    servers, port, binary, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    sizes = [int(x) for x in os.environ.get("BENCH_SESSIONS", "32 64").split()]
    # Every server warm first (its first message loads opencode's plugins in its own home).
    warm = [threading.Thread(target=burst, args=(port, 1, binary, "warm%d_" % i)) for i in range(servers)]
    for w in warm:
        w.start()
    for w in warm:
        w.join()
    rows = {}
    for k in sizes:
        wall, errors, rss = burst(port, k, binary, "s%d_" % k)
        rows[k] = {"wall": wall, "errors": errors, "rss_mb": rss}
        print("  servers=%d  %3d new sessions at once (own workspaces)  wall %6.2f s  %6.2f msg/s  errors %d  "
              "peak opencode RSS %7.1f MB" % (servers, k, wall, k / wall, errors, rss))
    data = {}
    if os.path.exists(out):
        with open(out) as f:
            data = json.load(f)
    data[str(servers)] = rows
    with open(out, "w") as f:
        json.dump(data, f)
    base = data.get("1")
    if servers != 1 and base:
        for k in sizes:
            if str(k) in base or k in base:
                b = base.get(str(k)) or base.get(k)
                print("  %3d sessions: 1 server / %d servers wall ratio %.2f (goal >= 1.6)   RSS ratio %.2f" % (
                    k, servers, b["wall"] / rows[k]["wall"], rows[k]["rss_mb"] / max(b["rss_mb"], 1)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
