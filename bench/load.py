#!/usr/bin/env python3
"""ocpm load benchmark: many sessions at once through a fast fake `opencode serve`.

Run by bench/load.sh. Prints, asserts nothing:
  * SESSIONS clients at once, each creating its session and sending MESSAGES messages one after
    another through nginx -> responders -> ocpmd -> the fake server: wall time, messages per second,
    p50/p95/p99 latency, errors by status (goal: zero);
  * the same clients and messages sent straight to a second fake server of the same kind (the
    baseline measured in the same run), and the ratio;
  * the memory of the manager and of its responders (RSS): at idle, after the load, after a second
    load of as many messages on new sessions (what grows with messages served: nothing should), and
    with 1,000 sessions (goal: manager under 16 MB);
  * the ratios and the memory as FIGURE lines too.
usage: load.py NGINX_PORT DIRECT_PORT DIRECT_PASSWORD MANAGER_PID SESSIONS MESSAGES WORKSPACE_DIR
"""
import base64
import http.client
import json
import os
import sys
import threading
import time

from benchlib import figure, pct, proc_stats, responders

port, dport, dpw, mpid = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
nsess, nmsg, wsdir = int(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
# RSS moves by whole pages and allocator arenas: less than this per 1,000 messages is noise, not
# memory kept per message served.
GROWTH_KB = 256


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


def through_stack(i, tag="load"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    h = {"Content-Type": "application/json"}
    sid = "%s%d" % (tag, i)
    st, _ = call(c, "POST", "/api/sessions", {"id": sid}, h)
    if st not in (200, 201):
        yield 0.0, False, st
        return
    for k in range(nmsg):
        t = time.monotonic()
        st, data = call(c, "POST", "/api/sessions/%s/messages" % sid, {"text": "message %d of %d" % (k, i)}, h)
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


def memory():
    """(manager RSS, responders' RSS together) in kB."""
    return proc_stats(mpid)[0], responders(mpid)[0]


def settled_memory():
    """memory() once the manager is idle again: it hands a burst's heap back at its next sweep
    (every 2 s), so the reading waits until it has not changed for 3 s (at most 12 s)."""
    last, since, deadline = memory(), time.monotonic(), time.monotonic() + 12
    while time.monotonic() < deadline and time.monotonic() - since < 3:
        time.sleep(0.25)
        now = memory()
        if now != last:
            last, since = now, time.monotonic()
    return last


def sessions_up_to(total):
    """Create sessions until the manager maps total of them, one after another."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    h = {"Content-Type": "application/json"}
    st, data = call(c, "GET", "/api/opencode/status", None, h)
    have = json.loads(data)["processManager"]["activeSessions"]
    for i in range(have, total):
        st, _ = call(c, "POST", "/api/sessions", {"id": "idle%d" % i}, h)
        if st != 201:
            sys.exit("bench: session create failed: %s" % st)
    st, data = call(c, "GET", "/api/opencode/status", None, h)
    return json.loads(data)["processManager"]["activeSessions"]


def show(r):
    print("%-28s %8.2f %9.1f %8.1f %8.1f %8.1f  %s" % (r["label"], r["wall_s"], r["per_s"], r["p50_ms"], r["p95_ms"],
                                                       r["p99_ms"], sum(r["errors"].values()) or 0))
    if r["errors"]:
        print("    errors by status: %s" % r["errors"])


before, idle = proc_stats(mpid), memory()
a = run("through the stack", through_stack)
after, loaded = proc_stats(mpid), settled_memory()
b = run("straight to a fake server", direct)
# As many messages again, on new sessions: what the manager and the responders keep per message
# served shows as growth between the two (warm-up and caches filled by the first are not counted).
a2 = run("through the stack, again", lambda i: through_stack(i, "again"))
twice = settled_memory()
mapped = sessions_up_to(1000)
many = settled_memory()
print("%d sessions at once x %d messages each" % (nsess, nmsg))
print("%-28s %8s %9s %8s %8s %8s  %s" % ("", "wall s", "msgs/s", "p50 ms", "p95 ms", "p99 ms", "errors"))
for r in (a, b, a2):
    show(r)
print("ratio stack / direct: wall %.2f, p50 %.2f" % (a["wall_s"] / b["wall_s"], a["p50_ms"] / b["p50_ms"]))
print("manager: RSS %d -> %d kB, open fds %d -> %d (every responder thread keeps one control connection)"
      % (before[0], after[0], before[1], after[1]))
print("memory, kB            %10s %10s %10s %12s" % ("idle", "after load", "after 2x", "%d sessions" % mapped))
for k, name in enumerate(("manager", "responders")):
    print("  %-20s %10d %10d %10d %12d" % (name, idle[k], loaded[k], twice[k], many[k]))
errs = sum(a["errors"].values()) + sum(b["errors"].values())
shape = "%d sessions x %d%s" % (nsess, nmsg, ", %d errors" % errs if errs else "")
figure("load.wall", "through the stack vs direct, %s: wall" % shape, a["wall_s"], b["wall_s"], "s", ("ratio", "<=", 1.1))
figure("load.p50", "through the stack vs direct, %s: p50" % shape, a["p50_ms"], b["p50_ms"], "ms", ("ratio", "<=", 1.5))
for k, name in enumerate(("manager (ocpmd)", "responders (all)")):
    tag = ("manager", "responders")[k]
    figure("mem.%s.idle" % tag, "%s RSS at idle" % name, idle[k] / 1024.0, None, "MB")
    figure("mem.%s.load" % tag, "%s RSS after the load" % name, loaded[k] / 1024.0, None, "MB")
    # The goal row is bench/overhead.sh's (1,000 sessions on a manager that served one at a
    # time, as the earlier figure was measured); this one follows 2,000 messages, 200 at once.
    figure("mem.%s.sessions" % tag, "%s RSS with %d sessions, after the load" % (name, mapped), many[k] / 1024.0,
           None, "MB")
    # Per 1,000 messages served, from the second load against the first (a2 sent a["messages"] more).
    n2 = a2["messages"] or 1
    figure("mem.%s.growth" % tag, "%s RSS growth per 1,000 messages" % name, (twice[k] - loaded[k]) * 1000.0 / n2,
           None, "kB", ("ocpm", "<=", GROWTH_KB))
