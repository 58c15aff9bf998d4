#!/usr/bin/env python3
"""Offline stand-in for an OpenAI-compatible model, so opencode answers without any API key.

Serves GET /v1/models and POST /v1/chat/completions (streaming SSE or not) on 127.0.0.1.
The answer is deterministic and proves what the model was sent:

    offline-model: you said "<last user text>" (user turns: N, earlier: "<previous user text>")

Fault knobs ride inside the user's text so that concurrent tests do not disturb each other:
    [[fail]]        answer HTTP 400 (opencode gives up at once)
    [[fail500]]     answer HTTP 500 (opencode retries without end)
    [[slow=MS]]     wait MS milliseconds between streamed chunks
    [[stall]]       send one chunk, then hang until the client goes away
    [[tool:NAME {JSON}]]
                    answer with one call of the tool NAME with the arguments JSON (any number of these
                    markers: one call each, in order, one per turn); once the turn's last message is
                    the tool's result, answer with text that quotes it:
                    offline-model: tool NAME answered "<first 200 characters of its result>"

Usage: offline_model.py [--port N] [--log FILE]; with --port 0 it picks a free port.
It prints "offline model listening on http://127.0.0.1:PORT" once ready.
"""
import argparse
import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL_ID = "offline"
LOG_LOCK = threading.Lock()


def text_of(content):
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def user_texts(messages):
    out = []
    for m in messages or []:
        if m.get("role") == "user":
            t = text_of(m.get("content")).strip()
            # opencode may wrap the user's text; keep the last line that is not markup.
            out.append(t)
    return out


TOOL_MARK = re.compile(r"\[\[tool:([A-Za-z0-9_.-]+) ")


def tool_calls_of(text):
    """The [[tool:NAME {JSON}]] markers of text, in order: [(name, arguments as a JSON string)]."""
    calls, dec, pos = [], json.JSONDecoder(), 0
    while True:
        m = TOOL_MARK.search(text, pos)
        if not m:
            return calls
        try:
            args, end = dec.raw_decode(text, m.end())
        except ValueError:
            pos = m.end()
            continue
        calls.append((m.group(1), json.dumps(args)))
        pos = end


def tool_turn(messages, offered):
    """What the model does about tools now: ("call", name, args, n) for the next marker not yet
    called since the last user message (when the request offers that tool: a title request
    offers none), ("answer", text) after a tool's result, or None."""
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    if last_user < 0:
        return None
    since = messages[last_user + 1:]
    wanted = tool_calls_of(text_of(messages[last_user].get("content")))
    made = sum(len(m.get("tool_calls") or []) for m in since if m.get("role") == "assistant")
    if made < len(wanted) and wanted[made][0] in offered:
        name, args = wanted[made]
        return ("call", name, args, made)
    if since and since[-1].get("role") == "tool":
        out = re.sub(r"\s+", " ", text_of(since[-1].get("content")))[:200]
        last_call = [c for m in since if m.get("role") == "assistant" for c in (m.get("tool_calls") or [])]
        name = last_call[-1]["function"]["name"] if last_call else "?"
        return ("answer", 'offline-model: tool %s answered "%s"' % (name, out))
    return None


def answer_for(messages):
    users = user_texts(messages)
    last = users[-1] if users else ""
    earlier = users[-2] if len(users) > 1 else ""
    shown = re.sub(r"\s+", " ", last)[:200]
    ans = 'offline-model: you said "%s" (user turns: %d' % (shown, len(users))
    if earlier:
        ans += ', earlier: "%s"' % re.sub(r"\s+", " ", earlier)[:200]
    return ans + ")"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "offline-model/1"

    def log_message(self, fmt, *args):
        pass

    def send_json(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.rstrip("/").endswith("/models"):
            self.send_json(200, {"object": "list", "data": [
                {"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "ocpm"}]})
        else:
            self.send_json(404, {"error": {"message": "not found"}})

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            req = json.loads(raw or b"{}")
        except ValueError:
            return self.send_json(400, {"error": {"message": "bad json"}})
        if not self.path.rstrip("/").endswith("/chat/completions"):
            return self.send_json(404, {"error": {"message": "not found"}})
        msgs = req.get("messages") or []
        if self.server.log_path:
            with LOG_LOCK, open(self.server.log_path, "a") as f:
                # "raw": the user turns exactly as received (no stripping), for byte-exact checks.
                raw_users = [text_of(m.get("content")) for m in msgs if m.get("role") == "user"]
                f.write(json.dumps({"t": time.time(), "users": user_texts(msgs), "raw": raw_users}) + "\n")
        users = user_texts(msgs)
        last = users[-1] if users else ""
        if "[[fail]]" in last:
            return self.send_json(400, {"error": {"message": "offline model: injected failure"}})
        if "[[fail500]]" in last:
            return self.send_json(500, {"error": {"message": "offline model: injected failure"}})
        slow = re.search(r"\[\[slow=(\d+)\]\]", last)
        delay = int(slow.group(1)) / 1000.0 if slow else 0.0
        offered = {t.get("function", {}).get("name") for t in req.get("tools") or [] if isinstance(t, dict)}
        tool = tool_turn(msgs, offered)
        text = tool[1] if tool and tool[0] == "answer" else answer_for(msgs)
        usage = {"prompt_tokens": sum(len(u.split()) for u in users) + 10,
                 "completion_tokens": len(text.split()), "total_tokens": 0}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        created = int(time.time())
        if not req.get("stream"):
            return self.send_json(200, {
                "id": "chatcmpl-offline", "object": "chat.completion", "created": created, "model": MODEL_ID,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": "stop"}], "usage": usage})
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()

        def chunk(delta, finish=None, with_usage=False):
            c = {"id": "chatcmpl-offline", "object": "chat.completion.chunk", "created": created,
                 "model": MODEL_ID, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            if with_usage:
                c["usage"] = usage
            self.wfile.write(b"data: " + json.dumps(c).encode() + b"\n\n")
            self.wfile.flush()

        try:
            if tool and tool[0] == "call":
                _, name, args, n = tool
                chunk({"role": "assistant", "content": None, "tool_calls": [{
                    "index": 0, "id": "call_offline_%d_%d" % (created, n), "type": "function",
                    "function": {"name": name, "arguments": args}}]})
                chunk({}, "tool_calls", True)
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
                self.close_connection = True
                return
            chunk({"role": "assistant", "content": ""})
            words = re.findall(r"\S+\s*", text)
            for i, w in enumerate(words):
                chunk({"content": w})
                if "[[stall]]" in last and i == 0:
                    while True:
                        time.sleep(1)
                        self.wfile.write(b": stalled\n\n")
                        self.wfile.flush()
                if delay:
                    time.sleep(delay)
            chunk({}, "stop", True)
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--log", default="")
    a = ap.parse_args()
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    srv.daemon_threads = True
    srv.log_path = a.log
    print("offline model listening on http://127.0.0.1:%d" % srv.server_address[1], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
