#!/usr/bin/env python3
"""ocpm soak: mixed traffic for a fixed time while the manager's RSS and open fds are sampled.

Run by bench/soak.sh. Prints, asserts nothing: RSS and fds of the manager (and the responders'
total) at the start, every minute, and at the end, with the traffic counts. The traffic, from
CLIENTS threads: a session created, two messages, one streamed message read to its end, one async
message polled to its end, one message aborted, one stream the client drops midway, status and a
history page, the session deleted; over and over.
usage: soak.py NGINX_PORT MANAGER_PID SECONDS CLIENTS
"""
import http.client
import json
import socket
import sys
import threading
import time

from benchlib import proc_stats, responders

port, mpid, seconds, nclients = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
counts, lock, stop = {}, threading.Lock(), threading.Event()


def note(k):
    with lock:
        counts[k] = counts.get(k, 0) + 1


def call(c, method, path, body=None, headers=None):
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    c.request(method, path, body=json.dumps(body) if body is not None else None, headers=h)
    r = c.getresponse()
    data = r.read()
    note("%s %d" % (method, r.status))
    return r.status, data


def client(n):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    i = 0
    while not stop.is_set():
        sid = "soak%d-%d" % (n, i)
        i += 1
        try:
            call(c, "POST", "/api/sessions", {"id": sid})
            call(c, "POST", "/api/sessions/%s/messages" % sid, {"text": "hello %d" % i})
            call(c, "POST", "/api/sessions/%s/messages" % sid, {"text": "[[provider_error]] fails"})
            st, data = call(c, "POST", "/api/sessions/%s/messages" % sid, {"text": "streamed"},
                            {"Accept": "text/event-stream"})
            st, data = call(c, "POST", "/api/sessions/%s/messages" % sid, {"text": "async"},
                            {"Prefer": "respond-async"})
            if st == 202:
                eid = json.loads(data)["execution_id"]
                for _ in range(200):
                    st, data = call(c, "GET", "/api/executions/%d" % eid)
                    if json.loads(data).get("status") not in ("queued", "running"):
                        break
                    time.sleep(0.01)
            call(c, "POST", "/api/sessions/%s/messages" % sid, {"text": "[[hang]] to abort"},
                 {"Prefer": "respond-async"})
            call(c, "POST", "/api/sessions/%s/abort" % sid, {})
            s = socket.create_connection(("127.0.0.1", port))
            body = json.dumps({"text": "[[slow=50]] dropped midway by its client"}).encode()
            s.sendall(b"POST /api/sessions/%s/messages HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n"
                      b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (sid.encode(), len(body)) + body)
            s.recv(100)
            s.close()
            note("dropped stream")
            call(c, "GET", "/api/opencode/status")
            call(c, "GET", "/api/executions?session=%s&limit=5" % sid)
            call(c, "DELETE", "/api/sessions/%s" % sid)
        except (OSError, http.client.HTTPException, ValueError, KeyError) as e:
            note("client error %s" % type(e).__name__)
            c.close()
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)


threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(nclients)]
t0 = time.monotonic()
print("%6s %10s %10s %10s %6s %12s %9s %9s" % ("t", "mgr RSS kB", "heap kB", "sqlite kB", "fds", "resp RSS kB",
                                                "resp fds", "requests"))


def heap_kb():
    """(heap in use, of it SQLite's) in kB, from the status endpoint."""
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        c.request("GET", "/api/opencode/status")
        o = json.loads(c.getresponse().read())["ocpm"]
        return (o["heapInUseBytes"] or 0) // 1024, o["database"]["sqliteMemoryBytes"] // 1024
    except (OSError, ValueError, KeyError, TypeError):
        return -1, -1


def sample():
    r, f = proc_stats(mpid)
    rr, rf = responders(mpid)
    with lock:
        total = sum(v for k, v in counts.items() if not k.startswith(("client", "dropped")))
    heap, sq = heap_kb()
    print("%6.0f %10d %10d %10d %6d %12d %9d %9d" % (time.monotonic() - t0, r, heap, sq, f, rr, rf, total), flush=True)
    return r, f


start = sample()
for t in threads:
    t.start()
next_at = 60
while time.monotonic() - t0 < seconds:
    time.sleep(1)
    if time.monotonic() - t0 >= next_at:
        sample()
        next_at += 60
stop.set()
for t in threads:
    t.join(130)
time.sleep(2)  # let the last aborts and drops settle before the final sample
end = sample()
print("manager RSS %d -> %d kB, open fds %d -> %d over %.0f s" % (start[0], end[0], start[1], end[1],
                                                                  time.monotonic() - t0))
print("traffic: " + ", ".join("%s=%d" % kv for kv in sorted(counts.items())))
