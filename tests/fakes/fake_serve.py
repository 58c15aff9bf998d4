"""`opencode serve` for the fake opencode: the subset of the HTTP API ocpm uses, with fault knobs.

Routes (HTTP Basic auth with OPENCODE_SERVER_PASSWORD on every one, health included):
  GET  /global/health                      {"healthy": true, "version": ...}
  GET  /global/event                       SSE: {"directory", "payload": {"type", "properties"}}
  POST /session?directory=D                {"id": "ses_..."}
  POST /session/{id}/message?directory=D   blocks until the turn ends: {"info", "parts"}
  POST /session/{id}/abort                 true
  POST /instance/dispose?directory=D       true
  POST /global/dispose                     true
  POST /permission/{id}/reply              {"reply", "message"?}: true, 404 for no such request
  POST /question/{id}/reply | /reject      {"answers"} or none: true, 404 for no such request
  GET  /vcs/diff?mode=git&directory=D      every file of D but .git, as added
  GET  /config/providers                   the models of OPENCODE_FAKE_MODELS (fake_opencode.MODELS)
  GET  /config                             {"model": the first of them}
A session keeps the last model a message named (as opencode does): a model the server does not offer
answers HTTP 500, and so does every later message of that session that names none.

Knobs in the message text: [[slow=MS]] (MS between streamed deltas), [[hang]] (until aborted),
[[crash]] (the server dies mid-message), [[provider_error]] (HTTP 200 with info.error),
[[grow=MB]] (the server keeps MB more memory), [[flood=BYTES]] (BYTES of log lines on stdout),
[[tools]] (a bash call that writes made.txt, a grep call that fails, and the turn's diff summary),
[[permission]] (a read of /etc/hostname that asks external_directory and waits for the reply),
[[question]] (the question tool: "Which color?" red/blue, waiting for the answer),
[[slowtool=MS]] (a bash call, "sleep 60 && make", running for MS ms without an event, then completed),
[[ghost]] (a permission.asked the server does not know: answering it gets 404; the turn waits until
aborted), [[twins]] (two permission.asked with one id, then waits for the abort), [[slowreply]] (the HTTP answer
to a reply comes 30 s after the reply took effect), [[spend=C]] (the assistant
message reports cost C, then the turn waits for the abort). Knobs in the environment:
OPENCODE_FAKE_SERVE_START_DELAY_MS (slow start), OPENCODE_FAKE_SERVE_NEVER_HEALTHY=1.
Files in OPENCODE_FAKE_CONTROL_DIR switch faults at run time: hang_health (health never answers),
slow_start (the next start takes 3 s before it listens), crash_start (every start exits 1 at once,
before it listens: a crash loop); NAME@HOME (hang_health@server-1) switches it
for the one server whose HOME's last component is HOME (ocpm's servers have homes of their own).
Each request is appended to OPENCODE_FAKE_LOG as {"serve": method, path, auth} when set.
"""
import base64
import json
import os
import random
import re
import string
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

VERSION = "0.0.0-fake"
LOCK = threading.Lock()
SUBSCRIBERS = []          # queues of SSE subscribers
SESSIONS = {}             # id -> {"directory", "history": [texts], "busy": bool, "abort": Event}
INSTANCES = set()         # directories loaded
HOG = []                  # memory kept by [[grow=MB]]
PROMPTS = {}              # pending permission/question id -> {"done": Event, "reply": body or "reject"}


def rid(prefix):
    return prefix + "".join(random.choice(string.ascii_letters + string.digits) for _ in range(20))


def publish(directory, typ, props):
    ev = json.dumps({"directory": directory, "payload": {"type": typ, "properties": props}})
    with LOCK:
        subs = list(SUBSCRIBERS)
    for q in subs:
        q.append(ev)


def control(name):
    d = os.environ.get("OPENCODE_FAKE_CONTROL_DIR")
    mine = name + "@" + os.path.basename(os.environ.get("HOME", "").rstrip("/"))
    return bool(d) and (os.path.exists(os.path.join(d, name)) or os.path.exists(os.path.join(d, mine)))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def send_json(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def authed(self):
        want = "opencode:" + os.environ.get("OPENCODE_SERVER_PASSWORD", "")
        got = self.headers.get("Authorization", "")
        ok = got == "Basic " + base64.b64encode(want.encode()).decode()
        log = os.environ.get("OPENCODE_FAKE_LOG")
        if log:
            with LOCK, open(log, "a") as f:
                f.write(json.dumps({"serve": self.command, "path": self.path, "auth": ok}) + "\n")
        if not ok:
            self.send_json(401, {"error": "unauthorized"})
        return ok

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(n) or b"{}") if n else {}

    def do_GET(self):
        if not self.authed():
            return
        u = urlparse(self.path)
        if u.path == "/global/health":
            if control("hang_health"):
                time.sleep(3600)
            if os.environ.get("OPENCODE_FAKE_SERVE_NEVER_HEALTHY"):
                return self.send_json(503, {"healthy": False})
            return self.send_json(200, {"healthy": True, "version": VERSION})
        if u.path == "/global/event":
            return self.events()
        import fake_opencode
        if u.path == "/config/providers":
            provs = {}
            for name in fake_opencode.MODELS:
                p, _, m = name.partition("/")
                provs.setdefault(p, {})[m] = {"id": m, "name": m}
            return self.send_json(200, {"providers": [{"id": p, "models": ms} for p, ms in provs.items()],
                                        "default": {p: next(iter(ms)) for p, ms in provs.items()}})
        if u.path == "/config":
            return self.send_json(200, {"model": fake_opencode.MODELS[0]})
        if u.path == "/vcs/diff":
            d = (parse_qs(u.query).get("directory") or [""])[0]
            out = []
            for root, dirs, files in os.walk(d):
                dirs[:] = [x for x in dirs if x != ".git"]
                for name in sorted(files):
                    path = os.path.join(root, name)
                    with open(path, "rb") as f:
                        lines = f.read().decode("utf-8", "replace").splitlines()
                    rel = os.path.relpath(path, d)
                    out.append({"file": rel, "patch": "".join("+%s\n" % x for x in lines), "additions": len(lines),
                                "deletions": 0, "status": "added"})
            return self.send_json(200, out)
        self.send_json(404, {"error": "not found"})

    def events(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        q = []
        with LOCK:
            SUBSCRIBERS.append(q)
        try:
            self.wfile.write(b'data: {"payload":{"type":"server.connected","properties":{}}}\n\n')
            self.wfile.flush()
            last = time.time()
            while True:
                while q:
                    self.wfile.write(b"data: " + q.pop(0).encode() + b"\n\n")
                    self.wfile.flush()
                if time.time() - last > 10:
                    self.wfile.write(b'data: {"payload":{"type":"server.heartbeat","properties":{}}}\n\n')
                    self.wfile.flush()
                    last = time.time()
                time.sleep(0.01)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            with LOCK:
                SUBSCRIBERS.remove(q)

    def do_POST(self):
        if not self.authed():
            return
        u = urlparse(self.path)
        directory = (parse_qs(u.query).get("directory") or [""])[0]
        if u.path == "/session":
            if not directory or not os.path.isdir(directory):
                return self.send_json(400, {"error": "bad directory"})
            sid = rid("ses_")
            import fake_opencode
            fake_opencode.history_save(sid, [])
            with LOCK:
                SESSIONS[sid] = {"directory": directory, "history": [], "busy": False, "abort": threading.Event()}
                INSTANCES.add(directory)
            publish(directory, "session.created", {"sessionID": sid, "info": {"id": sid, "directory": directory}})
            return self.send_json(200, {"id": sid, "directory": directory, "title": self.body().get("title", "")})
        if u.path == "/global/dispose":
            with LOCK:
                INSTANCES.clear()
            return self.send_json(200, True)
        if u.path == "/instance/dispose":
            with LOCK:
                INSTANCES.discard(directory)
            log = os.environ.get("OPENCODE_FAKE_LOG")
            if log:
                with LOCK, open(log, "a") as f:
                    f.write(json.dumps({"disposed": directory}) + "\n")
            return self.send_json(200, True)
        m = re.match(r"^/(permission|question)/([^/]+)/(reply|reject)$", u.path)
        if m:
            body = self.body()
            with LOCK:
                p = PROMPTS.pop(m.group(2), None)
            log = os.environ.get("OPENCODE_FAKE_LOG")
            if log:
                with LOCK, open(log, "a") as f:
                    f.write(json.dumps({"prompt_reply": m.group(2), "action": m.group(3), "body": body}) + "\n")
            if not p:
                return self.send_json(404, {"_tag": "NotFoundError", "message": "request not found: " + m.group(2)})
            p["reply"] = body if m.group(3) == "reply" else "reject"
            # As opencode does: the reply is published, and the turn goes on, before the HTTP answer
            # (late on a busy server: ocpm must neither end the turn nor recycle the server before it
            # lands, and must believe the event if the answer never comes).
            publish(p["directory"], m.group(1) + ".replied", {"sessionID": p["sid"], "requestID": m.group(2)})
            p["done"].set()
            time.sleep(30 if p["slow"] else 0.3)
            return self.send_json(200, True)
        m = re.match(r"^/session/([^/]+)/(message|abort)$", u.path)
        if not m:
            return self.send_json(404, {"error": "not found"})
        sid, what = m.group(1), m.group(2)
        with LOCK:
            if sid not in SESSIONS:
                # Like opencode, sessions outlive the process: load it from the shared store.
                import fake_opencode
                if not os.path.exists(fake_opencode.history_path(sid)):
                    return self.send_json(404, {"error": "no such session"})
                SESSIONS[sid] = {"directory": directory, "history": fake_opencode.history_load(sid),
                                 "busy": False, "abort": threading.Event()}
        s = SESSIONS[sid]
        if what == "abort":
            s["abort"].set()
            return self.send_json(200, True)
        return self.message(sid, s, directory or s["directory"], self.body())

    def agent_side(self, sid, s, directory, mid, text, aborted):
        """The knobs that make the agent act: tool calls, a permission, a question. Returns what the
        answer says about them, and whether the turn was aborted meanwhile."""
        extra = ""
        s["slowreply"] = "[[slowreply]]" in text
        if aborted:
            return extra, aborted
        if "[[tools]]" in text:
            with open(os.path.join(directory, "made.txt"), "w") as f:
                f.write("hi\n")
            tool_update(directory, sid, mid, "c1", "bash", "completed", {"command": "echo hi > made.txt"},
                        output="(no output)")
            tool_update(directory, sid, mid, "c2", "grep", "error", {"pattern": ""}, error="no pattern")
            publish(directory, "message.updated", {"sessionID": sid, "info": {
                "id": rid("msg_"), "role": "user", "sessionID": sid, "summary": {"diffs": [
                    {"file": "made.txt", "patch": "+hi\n", "additions": 1, "deletions": 0, "status": "added"}]}}})
        spend = re.search(r"\[\[spend=([0-9.]+)\]\]", text)
        if spend:
            publish(directory, "message.updated", {"sessionID": sid, "info": {
                "id": mid, "role": "assistant", "sessionID": sid, "cost": float(spend.group(1))}})
            s["abort"].wait(3600)
            return extra, True
        if "[[ghost]]" in text or "[[twins]]" in text:
            for _ in range(2 if "[[twins]]" in text else 1):
                publish(directory, "permission.asked", {"id": "per_ghost", "sessionID": sid, "permission": "read",
                                                        "patterns": ["*"], "tool": {"messageID": mid, "callID": "cg"}})
            s["abort"].wait(3600)
            return extra, True
        slowtool = re.search(r"\[\[slowtool=(\d+)\]\]", text)
        if slowtool:
            inp = {"command": "sleep 60 && make", "description": "a slow build"}
            tool_update(directory, sid, mid, "c5", "bash", "running", inp)
            if s["abort"].wait(int(slowtool.group(1)) / 1000.0):
                return extra, True
            tool_update(directory, sid, mid, "c5", "bash", "completed", inp, output="built")
        if "[[permission]]" in text:
            inp = {"filePath": "/etc/hostname"}
            tool_update(directory, sid, mid, "c3", "read", "running", inp)
            r = ask(directory, sid, s, "permission", {
                "permission": "external_directory", "patterns": ["/etc/*"],
                "metadata": {"filepath": "/etc/hostname", "parentDir": "/etc"}, "always": ["/etc/*"],
                "tool": {"messageID": mid, "callID": "c3"}})
            if r is None:
                return extra, True
            word = r.get("reply") if isinstance(r, dict) else "reject"
            if word in ("once", "always"):
                tool_update(directory, sid, mid, "c3", "read", "completed", inp, output="fake-host\n")
            else:
                tool_update(directory, sid, mid, "c3", "read", "error", inp,
                            error="The user rejected permission to use this specific tool call.")
            extra += " (permission: %s%s)" % (word, ", " + r["message"] if isinstance(r, dict) and r.get("message") else "")
        if "[[question]]" in text:
            qs = [{"question": "Which color?", "header": "Color",
                   "options": [{"label": "red", "description": "warm"}, {"label": "blue", "description": "cold"}]}]
            tool_update(directory, sid, mid, "c4", "question", "running", {"questions": qs})
            r = ask(directory, sid, s, "question", {"questions": qs, "tool": {"messageID": mid, "callID": "c4"}})
            if r is None:
                return extra, True
            if r == "reject":
                tool_update(directory, sid, mid, "c4", "question", "error", {"questions": qs},
                            error="The user dismissed this question")
                extra += " (question rejected)"
            else:
                tool_update(directory, sid, mid, "c4", "question", "completed", {"questions": qs}, output="answered")
                extra += " (answers: %s)" % json.dumps(r.get("answers"))
        return extra, aborted

    def message(self, sid, s, directory, req):
        import fake_opencode
        text = "".join(p.get("text", "") for p in req.get("parts", []) if p.get("type") == "text")
        log = os.environ.get("OPENCODE_FAKE_LOG")
        if log:
            with LOCK, open(log, "a") as f:
                f.write(json.dumps({"message": text, "model": req.get("model")}) + "\n")
        model = req.get("model") or {}
        if model:
            s["model"] = "%s/%s" % (model.get("providerID"), model.get("modelID"))
        if s.get("model", fake_opencode.MODELS[0]) not in fake_opencode.MODELS:
            return self.send_json(500, {"error": "unknown model %s" % s["model"]})
        with LOCK:
            INSTANCES.add(directory)
        s["abort"].clear()
        s["history"].append(text)
        import fake_opencode
        fake_opencode.history_save(sid, s["history"])
        mid = rid("msg_")
        publish(directory, "session.status", {"sessionID": sid, "status": {"type": "busy"}})
        if "[[crash]]" in text:
            os._exit(3)
        g = re.search(r"\[\[grow=(\d+)\]\]", text)
        if g:
            HOG.append(bytearray(int(g.group(1)) << 20))
        answer = "fake server answer to: %s (turn %d" % (text, len(s["history"]))
        if len(s["history"]) > 1:
            answer += ", earlier: %s" % s["history"][-2]
        answer += ")"
        if s.get("model", fake_opencode.MODELS[0]) != fake_opencode.MODELS[0]:
            answer += " (model %s)" % s["model"]
        info = {"id": mid, "sessionID": sid, "role": "assistant", "time": {"created": int(time.time() * 1000)},
                "tokens": {"input": len(text.split()) + 5, "output": len(answer.split()), "reasoning": 0,
                           "cache": {"read": 0, "write": 0}}, "cost": 0.002,
                "path": {"cwd": directory, "root": directory}}
        aborted = False
        flood = re.search(r"\[\[flood=(\d+)\]\]", text)
        if flood:
            line = ("fake serve log line " + "x" * 100 + "\n").encode()
            for _ in range(int(flood.group(1)) // len(line) + 1):
                sys.stdout.buffer.write(line)
            sys.stdout.flush()
        if "[[hang]]" in text:
            aborted = s["abort"].wait(3600)
        extra, aborted = self.agent_side(sid, s, directory, mid, text, aborted)
        answer += extra
        slow = re.search(r"\[\[slow=(\d+)\]\]", text)
        pid = rid("prt_")
        publish(directory, "message.part.updated",
                {"sessionID": sid, "part": {"id": pid, "messageID": mid, "sessionID": sid, "type": "text", "text": ""}})
        if not aborted:
            for w in re.findall(r"\S+\s*", answer):
                if s["abort"].is_set():
                    aborted = True
                    break
                publish(directory, "message.part.delta",
                        {"sessionID": sid, "messageID": mid, "partID": pid, "field": "text", "delta": w})
                if slow:
                    time.sleep(int(slow.group(1)) / 1000.0)
        info["time"]["completed"] = int(time.time() * 1000)
        parts = [{"type": "step-start"}]
        if aborted:
            info["error"] = {"name": "MessageAbortedError", "data": {"message": "aborted"}}
            publish(directory, "session.error", {"sessionID": sid, "error": info["error"]})
        elif "[[provider_error]]" in text:
            info["error"] = {"name": "APIError", "data": {"message": "fake provider failure"}}
            publish(directory, "session.error", {"sessionID": sid, "error": info["error"]})
        else:
            parts.append({"type": "text", "text": answer})
            parts.append({"type": "step-finish", "tokens": info["tokens"], "cost": info["cost"]})
            publish(directory, "message.part.updated",
                    {"sessionID": sid, "part": {"id": pid, "sessionID": sid, "type": "text", "text": answer}})
        publish(directory, "message.updated", {"sessionID": sid, "info": info})
        publish(directory, "session.status", {"sessionID": sid, "status": {"type": "idle"}})
        publish(directory, "session.idle", {"sessionID": sid})
        self.send_json(200, {"info": info, "parts": parts})


def tool_update(directory, sid, mid, call, tool, status, inp, **more):
    state = {"status": status, "input": inp, "time": {"start": int(time.time() * 1000)}}
    if status in ("completed", "error"):
        state["time"]["end"] = int(time.time() * 1000) + 1
    state.update(more)
    publish(directory, "message.part.updated", {"sessionID": sid, "part": {
        "id": "prt_" + call, "messageID": mid, "sessionID": sid, "type": "tool", "tool": tool, "callID": call,
        "state": state}})


def ask(directory, sid, s, kind, props):
    """Publish KIND.asked and wait for its reply (or the abort): the reply's body, "reject", or None."""
    rq = rid("per_" if kind == "permission" else "que_")
    p = {"done": threading.Event(), "reply": None, "directory": directory, "sid": sid, "slow": s.get("slowreply")}
    with LOCK:
        PROMPTS[rq] = p
    publish(directory, kind + ".asked", dict(props, id=rq, sessionID=sid))
    while not p["done"].wait(0.05):
        if s["abort"].is_set():
            with LOCK:
                PROMPTS.pop(rq, None)
            return None
    return p["reply"]


def serve(argv):
    host, port = "127.0.0.1", 4096
    i = 0
    while i < len(argv):
        if argv[i] == "--hostname":
            host = argv[i + 1]
            i += 2
        elif argv[i] == "--port":
            port = int(argv[i + 1])
            i += 2
        elif argv[i] in ("--help", "-h"):
            print("opencode serve: starts a headless opencode server (fake)")
            return 0
        else:
            i += 1
    if control("crash_start"):
        print("fake opencode serve: crashing at start (crash_start)", file=sys.stderr, flush=True)
        return 1
    delay = int(os.environ.get("OPENCODE_FAKE_SERVE_START_DELAY_MS") or 0)
    if control("slow_start"):
        delay = max(delay, 3000)
    if delay:
        time.sleep(delay / 1000.0)
    ThreadingHTTPServer.request_queue_size = 1024  # the real server takes hundreds of connections at once
    srv = ThreadingHTTPServer((host, port), Handler)
    srv.daemon_threads = True
    print("opencode server listening on http://%s:%d" % (host, port), flush=True)
    srv.serve_forever()
    return 0
