#!/usr/bin/env python3
"""ocpm benchmark, server mode vs per-session mode, with the real opencode and the offline model.

Run by bench/server.sh. Prints a table, asserts nothing:
  * sequential messages through nginx in server mode and in per-session mode: p50/p95 and the ratio
    (goal: server mode at least 20x faster);
  * 16 and 32 concurrent sessions in server mode: throughput, errors (goal: zero), peak RSS of all
    opencode processes together;
  * the stack's overhead against calling the same `opencode serve` directly (goal: p50 ratio <= 1.05),
    BENCH_SERVER_RUNS (5) times, each on new sessions: every run's ratio and the range, as FIGURE
    lines too (the goal is met only when every run meets it).
"""
import base64
import http.client
import json
import os
import subprocess
import sys
import threading
import time

from benchlib import at_once, figure, pct, rss_kb


class Client:
    def __init__(self, port, auth=None):
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        self.h = {"Content-Type": "application/json"}
        if auth:
            self.h["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()

    def call(self, method, path, body=None):
        self.c.request(method, path, body=json.dumps(body) if body is not None else None, headers=self.h)
        r = self.c.getresponse()
        data = r.read()
        return r.status, (json.loads(data) if data else None)


def opencode_rss_kb(binary):
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                if not f.read().split(b"\0")[0].decode(errors="replace").startswith(binary):
                    continue
            total += rss_kb(pid)
        except OSError:
            pass
    return total


def sequential(port, session, n, label):
    cl = Client(port)
    cl.call("POST", "/api/sessions", {"id": session})
    times, errors = [], 0
    for i in range(n):
        t0 = time.perf_counter()
        st, body = cl.call("POST", "/api/sessions/%s/messages" % session, {"text": "sequential %d" % i})
        times.append((time.perf_counter() - t0) * 1000)
        errors += st != 200
    print("  %-44s n=%3d  p50 %9.1f ms  p95 %9.1f ms  errors %d" % (label, n, pct(times, 50), pct(times, 95), errors))
    return times


def concurrent(port, k, binary, tag):
    results = []
    lock = threading.Lock()

    def one(i):
        cl = Client(port)
        sid = "%s%d" % (tag, i)
        # One workspace for all, as the direct run uses: opencode loads an instance per directory,
        # and that start-up (not ocpm) dominates when every session has its own (BENCH_OWN_WORKSPACES=1).
        ws = sid if os.environ.get("BENCH_OWN_WORKSPACES") else "shared-" + tag
        cl.call("POST", "/api/sessions", {"id": sid, "workspace": ws})
        st, body = cl.call("POST", "/api/sessions/%s/messages" % sid, {"text": "concurrent %d" % i})
        with lock:
            results.append(st == 200 and body["execution"]["status"] == "succeeded")

    wall, peak_kb = at_once(k, one, lambda: opencode_rss_kb(binary))
    peak = [peak_kb]
    ok = sum(results)
    print("  %-44s wall %6.2f s  %6.2f msg/s  errors %d  peak opencode RSS %7.1f MB" % (
        "%d sessions at once (server mode%s)" % (k, ", own dirs" if os.environ.get("BENCH_OWN_WORKSPACES") else ""),
        wall, k / wall, k - ok, peak[0] / 1024.0))


def direct_concurrent(server_port, password, workspace, k):
    """k new sessions at once, straight to opencode serve: the baseline for the stack's figure."""
    results = []
    lock = threading.Lock()

    def one(i):
        cl = Client(server_port, "opencode:" + password)
        q = "?directory=" + workspace
        st, s = cl.call("POST", "/session" + q, {"title": "bench"})
        st, body = cl.call("POST", "/session/%s/message%s" % (s["id"], q),
                           {"parts": [{"type": "text", "text": "direct concurrent %d" % i}]})
        with lock:
            results.append(st == 200 and not body["info"].get("error"))

    wall, _ = at_once(k, one)
    print("  %-44s wall %6.2f s  %6.2f msg/s  errors %d" % (
        "%d sessions at once, opencode serve directly" % k, wall, k / wall, k - sum(results)))


def interleaved(port, server_port, password, workspace, n, session):
    """n messages each way in turn: (times through the stack, times direct, failed messages)."""
    st_cl = Client(port)
    st_cl.call("POST", "/api/sessions", {"id": session})
    d_cl = Client(server_port, "opencode:" + password)
    q = "?directory=" + workspace
    st, s = d_cl.call("POST", "/session" + q, {"title": "bench"})
    if st != 200:
        sys.exit("bench: opencode serve did not create a session: %s %s" % (st, s))
    stack, direct_t, failed = [], [], 0
    for i in range(n):
        t0 = time.perf_counter()
        st, body = st_cl.call("POST", "/api/sessions/%s/messages" % session, {"text": "sequential %d" % i})
        stack.append((time.perf_counter() - t0) * 1000)
        failed += st != 200 or body["execution"]["status"] != "succeeded"
        t0 = time.perf_counter()
        st, body = d_cl.call("POST", "/session/%s/message%s" % (s["id"], q),
                             {"parts": [{"type": "text", "text": "sequential %d" % i}]})
        direct_t.append((time.perf_counter() - t0) * 1000)
        failed += st != 200 or bool(body["info"].get("error"))
    return stack, direct_t, failed


def prepare_like_ocpm(ws, uid, gid):
    def as_agent():
        if uid is not None:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": ws, "GIT_CONFIG_NOSYSTEM": "1"}
    if not os.path.isdir(os.path.join(ws, ".git")):
        subprocess.run(["git", "init", "-q", "-b", "main"], cwd=ws, env=env, preexec_fn=as_agent, check=True)
        subprocess.run(["git", "-c", "user.name=ocpm", "-c", "user.email=ocpm@localhost", "-c", "commit.gpgsign=false",
                        "commit", "-q", "--allow-empty", "--no-verify", "-m", "ocpm workspace bench"], cwd=ws, env=env,
                       preexec_fn=as_agent, check=True)


def direct(server_port, password, workspace, n):
    cl = Client(server_port, "opencode:" + password)
    q = "?directory=" + workspace
    st, s = cl.call("POST", "/session" + q, {"title": "bench"})
    sid = s["id"]
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        st, body = cl.call("POST", "/session/%s/message%s" % (sid, q),
                           {"parts": [{"type": "text", "text": "direct %d" % i}]})
        times.append((time.perf_counter() - t0) * 1000)
    return times


def main():
    mode, port, binary = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if mode == "server":
        n = int(os.environ.get("BENCH_SEQ_SERVER", "40"))
        cl = Client(port)
        st, status = cl.call("GET", "/api/opencode/status")
        spid, sport = status["server"]["pid"], status["server"]["port"]
        with open("/proc/%d/environ" % spid, "rb") as f:
            env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
        password = env[b"OPENCODE_SERVER_PASSWORD"].decode()
        ws = os.environ["BENCH_WS"]
        os.makedirs(ws, exist_ok=True)
        # Started as root, ocpmd runs the server as its agent user, who must own the direct run's
        # workspace as it owns the sessions' (else opencode answers 500 to every call there).
        owner = os.stat("/proc/%d" % spid)
        if os.geteuid() == 0:
            os.chown(ws, owner.st_uid, owner.st_gid)
        # Prepared as ocpm prepares a session's (src/agent/project.c): its own git repository with
        # one empty commit. opencode snapshots a repository's files at every step, which a plain
        # directory skips: the baseline must pay what the stack's sessions pay.
        prepare_like_ocpm(ws, owner.st_uid if os.geteuid() == 0 else None, owner.st_gid)
        # Interleaved, one message each way in turn, so warm-up and conversation length are equal; each
        # run on new sessions, so no run inherits a longer conversation than the one before.
        runs = int(os.environ.get("BENCH_SERVER_RUNS", "5"))
        ratios, stack = [], []
        for r in range(1, runs + 1):
            st_t, d, failed = interleaved(port, sport, password, ws, n, "seq%d" % r)
            stack += st_t
            ratios.append(pct(st_t, 50) / pct(d, 50))
            print("  run %d of %d" % (r, runs))
            print("  %-44s n=%3d  p50 %9.1f ms  p95 %9.1f ms" % ("sequential, server mode, through nginx", n,
                                                                   pct(st_t, 50), pct(st_t, 95)))
            print("  %-44s n=%3d  p50 %9.1f ms  p95 %9.1f ms" % ("the same opencode serve called directly", n,
                                                                   pct(d, 50), pct(d, 95)))
            print("  %-44s %.3f   (goal <= 1.05)   failed messages %d" % (
                "overhead ratio, stack p50 / direct p50", ratios[-1], failed))
            # A failed message is quick: the label says so, since the ratio then means little.
            figure("server.run%d" % r, "server mode vs the same opencode serve, run %d: p50%s" % (
                r, " [%d failed]" % failed if failed else ""), pct(st_t, 50),
                   pct(d, 50), "ms", ("ratio", "<=", 1.05))
        figure("server.range", "server mode vs the same opencode serve, %d runs: min-max" % runs, None, None, "",
               ("ratio", "<=", 1.05), ratio="%.2f-%.2f" % (min(ratios), max(ratios)),
               met="yes" if max(ratios) <= 1.05 else "no")
        with open(os.environ["BENCH_OUT"], "w") as f:
            json.dump({"server_p50": pct(stack, 50), "server_p95": pct(stack, 95)}, f)
        for k in () if os.environ.get("BENCH_ONLY_SEQ") else (16, 32):
            concurrent(port, k, binary, "c%d_" % k)
            direct_concurrent(sport, password, ws, k)
    elif not os.environ.get("BENCH_ONLY_SEQ"):
        n = int(os.environ.get("BENCH_SEQ_RUN", "6"))
        t = sequential(port, "seqrun", n, "sequential, per-session mode, through nginx")
        with open(os.environ["BENCH_OUT"]) as f:
            srv = json.load(f)
        print("  %-44s p50 %.1fx   p95 %.1fx   (goal >= 20x)" % (
            "speed-up of server mode", pct(t, 50) / srv["server_p50"], pct(t, 95) / srv["server_p95"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
