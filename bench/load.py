#!/usr/bin/env python3
"""ocpm load benchmark: many sessions at once through a fast fake `opencode serve`.

Run by bench/load.sh. Prints, asserts nothing:
  * SESSIONS clients at once, each creating its session and sending MESSAGES messages one after
    another through nginx -> responders -> ocpmd -> the fake server: wall time, messages per second,
    p50/p95/p99 latency, errors by status (goal: zero);
  * the same clients and messages sent straight to a second fake server of the same kind (the
    baseline measured in the same run), and the ratio;
  * the manager's RSS and open file descriptors before and after.
usage: load.py NGINX_PORT DIRECT_PORT DIRECT_PASSWORD MANAGER_PID SESSIONS MESSAGES WORKSPACE_DIR
"""
import base64
import http.client
import json
import os
import sys
import threading
import time

from benchlib import pct, proc_stats

port, dport, dpw, mpid = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
nsess, nmsg, wsdir = int(sys.argv[5]), int(sys.argv[6]), sys.argv[7]


def call(conn, method, path, body, headers):
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    r = conn.getresponse()
    data = r.read()
    return r.status, data


def run(label, client_fn):
    lat, errors, lock = [], {}, threading.Lock()
    barrier = threading.Barrier(nsess + 1)

    def worker(i):
        mine, errs = [], {}
        barrier.wait()
        try:
            for t, ok, status in client_fn(i):
                mine.append(t)
                if not ok:
                    errs[status] = errs.get(status, 0) + 1
        except Exception as e:  # a dead connection counts as an error of its own
            errs[type(e).__name__] = errs.get(type(e).__name__, 0) + 1
        with lock:
            lat.extend(mine)
            for k, v in errs.items():
                errors[k] = errors.get(k, 0) + v

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(nsess)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.monotonic()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    return {"label": label, "wall_s": wall, "messages": len(lat), "per_s": len(lat) / wall if wall else 0,
            "p50_ms": pct(lat, 50) * 1000, "p95_ms": pct(lat, 95) * 1000, "p99_ms": pct(lat, 99) * 1000,
            "errors": errors}


def through_stack(i):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    h = {"Content-Type": "application/json"}
    st, _ = call(c, "POST", "/api/sessions", {"id": "load%d" % i}, h)
    if st not in (200, 201):
        yield 0.0, False, st
        return
    for k in range(nmsg):
        t = time.monotonic()
        st, data = call(c, "POST", "/api/sessions/load%d/messages" % i, {"text": "message %d of %d" % (k, i)}, h)
        ok = st == 200 and json.loads(data)["execution"]["status"] == "succeeded"
        yield time.monotonic() - t, ok, st


def direct(i):
    c = http.client.HTTPConnection("127.0.0.1", dport, timeout=600)
    h = {"Content-Type": "application/json",
         "Authorization": "Basic " + base64.b64encode(("opencode:" + dpw).encode()).decode()}
    d = os.path.join(wsdir, "direct%d" % i)
    os.makedirs(d, exist_ok=True)
    st, data = call(c, "POST", "/session?directory=" + d, {}, h)
    if st != 200:
        yield 0.0, False, st
        return
    sid = json.loads(data)["id"]
    for k in range(nmsg):
        t = time.monotonic()
        st, data = call(c, "POST", "/session/%s/message?directory=%s" % (sid, d),
                        {"parts": [{"type": "text", "text": "message %d of %d" % (k, i)}]}, h)
        ok = st == 200 and not json.loads(data)["info"].get("error")
        yield time.monotonic() - t, ok, st


before = proc_stats(mpid)
a = run("through the stack", through_stack)
after = proc_stats(mpid)
b = run("straight to a fake server", direct)
print("%d sessions at once x %d messages each" % (nsess, nmsg))
print("%-28s %8s %9s %8s %8s %8s  %s" % ("", "wall s", "msgs/s", "p50 ms", "p95 ms", "p99 ms", "errors"))
for r in (a, b):
    print("%-28s %8.2f %9.1f %8.1f %8.1f %8.1f  %s" % (r["label"], r["wall_s"], r["per_s"], r["p50_ms"], r["p95_ms"],
                                                       r["p99_ms"], sum(r["errors"].values()) or 0))
    if r["errors"]:
        print("    errors by status: %s" % r["errors"])
print("ratio stack / direct: wall %.2f, p50 %.2f" % (a["wall_s"] / b["wall_s"], a["p50_ms"] / b["p50_ms"]))
print("manager: RSS %d -> %d kB, open fds %d -> %d (every responder thread keeps one control connection)"
      % (before[0], after[0], before[1], after[1]))
