#!/usr/bin/env python3
"""500 clients opening message streams at once, for the fault tests (stdlib only).

flood.py PORT N MESSAGE
Creates sessions flood0..flood{N-1}, then from N threads released together opens N streaming
POST /api/sessions/floodI/messages with MESSAGE (a message that waits: [[hang]]). Every client
reads its status line; streams answered 200 are held open. While they are held it checks that
the manager still answers /api/health and reads activeStreams; then deletes every session
(which aborts the held runs) and reads each held stream to its end.
Prints one JSON object: counts by status, the slowest refusal, whether every refusal was
ocpm's JSON busy error with Retry-After, health while held, and how the held streams ended."""
import http.client
import json
import socket
import sys
import threading
import time

port, n, message = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
HOST = "127.0.0.1"


def call(method, path, body=None):
    c = http.client.HTTPConnection(HOST, port, timeout=30)
    c.request(method, path, body=json.dumps(body) if body is not None else None,
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


for i in range(n):
    st, _ = call("POST", "/api/sessions", {"id": "flood%d" % i})
    if st != 201:
        sys.exit("cannot create session flood%d: %d" % (i, st))

body = json.dumps({"text": message}).encode()
barrier = threading.Barrier(n + 1)
results = [None] * n
held = {}


def client(i):
    s = socket.socket()
    s.settimeout(60)
    req = (b"POST /api/sessions/flood%d/messages HTTP/1.1\r\nHost: localhost\r\n"
           b"Content-Type: application/json\r\nAccept: text/event-stream\r\nConnection: close\r\n"
           b"Content-Length: %d\r\n\r\n" % (i, len(body))) + body
    barrier.wait()
    t0 = time.monotonic()
    try:
        s.connect((HOST, port))
        s.sendall(req)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        took = time.monotonic() - t0
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
        headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
        if status == 200:
            held[i] = (s, rest)
        else:
            length = int(headers.get("content-length", "0"))
            while len(rest) < length:
                chunk = s.recv(65536)
                if not chunk:
                    break
                rest += chunk
            s.close()
        results[i] = {"status": status, "took": took, "headers": headers, "body": rest if status != 200 else b""}
    except OSError as e:
        results[i] = {"status": 0, "took": time.monotonic() - t0, "error": str(e)}


threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
for t in threads:
    t.start()
barrier.wait()
for t in threads:
    t.join(90)

out = {"clients": n, "status": {}}
for r in results:
    k = str(r["status"]) if r else "none"
    out["status"][k] = out["status"].get(k, 0) + 1
refused = [r for r in results if r and r["status"] not in (200, 0)]
out["slowest_refusal_s"] = round(max((r["took"] for r in refused), default=0), 3)
out["fastest_refusal_s"] = round(min((r["took"] for r in refused), default=0), 3)


def busy_ok(r):
    try:
        b = json.loads(r["body"])
    except ValueError:
        return False
    return (r["status"] == 503 and b.get("error", {}).get("code") == "server_busy"
            and r["headers"].get("retry-after", "").isdigit())


out["refusals_json_busy"] = all(busy_ok(r) for r in refused) if refused else False
st, data = call("GET", "/api/health")
out["health_while_held"] = st
st, data = call("GET", "/api/opencode/status")
out["active_streams_while_held"] = json.loads(data).get("activeStreams") if st == 200 else None

for i in range(n):
    call("DELETE", "/api/sessions/flood%d" % i)
ended = 0
for i, (s, rest) in held.items():
    buf = rest
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    except OSError:
        pass
    s.close()
    if b"event: done" in buf:
        ended += 1
out["held"] = len(held)
out["held_ended_with_done"] = ended
print(json.dumps(out))
