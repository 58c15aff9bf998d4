#!/usr/bin/env python3
"""ocpm benchmark: what the cluster's front costs (run by bench/cluster.sh). Prints, never asserts.

  * a request naming a session (GET /api/sessions/{id}) through the front against the same request
    straight to its node, on kept-alive connections, one at a time: p50 and p95 (goal: the front
    adds at most a third, ratio <= 1.33);
  * the same, 8 clients at once: requests a second, the median of 5 alternating rounds (goal: ratio
    >= 0.75; on one host the front takes the same cores as the node it passes to);
  * a new session through the front (its readiness probe, then the creation on the node it found)
    against a creation straight to a node (goal: ratio <= 2: by design it is two requests).
"""
import http.client
import sys
import threading
import time

from benchlib import at_once, figure, pct


def conn(port):
    return http.client.HTTPConnection("127.0.0.1", port, timeout=60)


def timed(c, method, path, body=None, headers=None):
    t0 = time.perf_counter()
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    r.read()
    ms = (time.perf_counter() - t0) * 1000
    if r.status >= 300:
        raise SystemExit("bench: %s %s answered %d" % (method, path, r.status))
    return ms


def latencies(port, path, n):
    c = conn(port)
    timed(c, "GET", path)
    return [timed(c, "GET", path) for _ in range(n)]


def rate(port, path, n, k=8):
    per = max(1, n // k)

    def one(_):
        c = conn(port)
        for _ in range(per):
            timed(c, "GET", path)
    wall, _ = at_once(k, one)
    return per * k / wall


def creations(port, n):
    c = conn(port)
    return [timed(c, "POST", "/api/sessions", b"{}", {"Content-Type": "application/json"}) for _ in range(n)]


def main():
    front, node, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    c = conn(front)
    c.request("PUT", "/api/sessions/s_n1_bench", body=b"{}", headers={"Content-Type": "application/json"})
    r = c.getresponse()
    r.read()
    if r.status not in (200, 201):
        raise SystemExit("bench: PUT through the front answered %d" % r.status)
    path = "/api/sessions/s_n1_bench"
    # Interleaved rounds, so that a noisy moment falls on both sides alike.
    via, direct = [], []
    for _ in range(5):
        direct += latencies(node, path, n // 5)
        via += latencies(front, path, n // 5)
    print("GET a session: front p50 %.3f ms p95 %.3f ms, node p50 %.3f ms p95 %.3f ms (%d each)"
          % (pct(via, 50), pct(via, 95), pct(direct, 50), pct(direct, 95), len(via)))
    figure("cluster.route_p50", "a request naming a session, p50: through the front vs to its node",
           pct(via, 50), pct(direct, 50), "ms", ("ratio", "<=", 1.33))
    figure("cluster.route_p95", "the same, p95", pct(via, 95), pct(direct, 95), "ms", ("ratio", "<=", 1.33))
    # Alternate rounds, the median of each side: on a shared machine the front and the node take
    # the same cores, and one moment's noise would otherwise decide the ratio.
    rvs, rds = [], []
    for _ in range(5):
        rds.append(rate(node, path, n // 2))
        rvs.append(rate(front, path, n // 2))
    rv, rd = pct(rvs, 50), pct(rds, 50)
    print("GET a session, 8 clients: front %.0f/s, node %.0f/s" % (rv, rd))
    figure("cluster.route_rate", "the same, 8 clients at once, requests a second", rv, rd, "req/s",
           ("ratio", ">=", 0.75))
    m = max(20, n // 10)
    cd, cv = [], []
    for _ in range(2):
        cd += creations(node, m // 2)
        cv += creations(front, m // 2)
    print("new session: front p50 %.3f ms, node p50 %.3f ms (%d each)" % (pct(cv, 50), pct(cd, 50), len(cv)))
    figure("cluster.create_p50", "a new session, p50: placed by the front (probe + creation) vs on a node",
           pct(cv, 50), pct(cd, 50), "ms", ("ratio", "<=", 2))


if __name__ == "__main__":
    main()
