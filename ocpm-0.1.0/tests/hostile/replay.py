#!/usr/bin/env python3
"""Replay the hostile-input corpus through nginx (stdlib only).

replay.py PORT CORPUS
Each case is sent on its own connection (raw sockets: malformed requests must reach nginx as
written). Prints one line per case, "ok - NAME" or "not ok - NAME: why", then one line
"creates: session ID" per session a valid case may have created.

Corpus format (one case per block):
  === NAME
  send: METHOD PATH      an HTTP/1.1 request; Host, Connection: close and Content-Length are added
  header: NAME: VALUE    repeatable
  body: TEXT             Python bytes escapes (\\xff, \\x00, \\n); {{N*TEXT}} repeats TEXT N times
  raw: TEXT              the whole request as written (same escapes); nothing is added
  slow: MS               send the body one byte every MS ms (slowloris)
  length: N              declare Content-Length N whatever the body is
  expect: STATUS CODE    CODE: error.code of the JSON answer; "-" any JSON; "closed": no answer
  field: KEY=VALUE       a top-level string field of the JSON answer
  creates: session ID    a valid case: the session it may add
"""
import codecs
import json
import re
import socket
import sys
import time

port, corpus = int(sys.argv[1]), sys.argv[2]


def unescape(text):
    text = re.sub(r"\{\{(\d+)\*(.*?)\}\}", lambda m: m.group(2) * int(m.group(1)), text)
    return codecs.escape_decode(text.encode("utf-8"))[0]


def parse(path):
    cases, cur = [], None
    for line in open(path, encoding="utf-8"):
        line = line.rstrip("\n")
        if line.startswith("#") or not line.strip():
            continue
        if line.startswith("=== "):
            cur = {"name": line[4:].strip(), "headers": [], "body": b"", "fields": {}}
            cases.append(cur)
            continue
        key, _, val = line.partition(": ")
        if key == "header":
            cur["headers"].append(unescape(val))
        elif key in ("body", "raw"):
            cur[key] = unescape(val)
        elif key == "field":
            k, _, v = val.partition("=")
            cur["fields"][k] = v
        else:
            cur[key] = val
    return cases


def request_bytes(c):
    if "raw" in c:
        return c["raw"], b""
    method, target = c["send"].split(" ", 1)
    target = unescape(target).decode("latin-1")
    body = c["body"]
    head = b"%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n" % (method.encode(), target.encode())
    for h in c["headers"]:
        head += h + b"\r\n"
    if body or method in ("POST", "PUT", "PATCH") or "length" in c:
        head += b"Content-Length: %d\r\n" % int(c.get("length", len(body)))
        if not any(h.lower().startswith(b"content-type:") for h in c["headers"]):
            head += b"Content-Type: application/json\r\n"
    return head + b"\r\n", body


def run(c):
    head, body = request_bytes(c)
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    data = b""
    try:
        s.sendall(head)
        if "slow" in c:
            for b in body:
                s.sendall(bytes([b]))
                time.sleep(int(c["slow"]) / 1000.0)
        elif body:
            s.sendall(body)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except (BrokenPipeError, ConnectionResetError):
        pass  # nginx may answer and close before it has read everything: keep what came
    finally:
        s.close()
    return data


def check(c, data):
    want_status, want_code = c["expect"].split(" ", 1)
    if want_code == "closed":
        return None if data == b"" else "expected the connection closed without an answer, got %r" % data[:120]
    head, _, body = data.partition(b"\r\n\r\n")
    first = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = first.split()
    status = parts[1] if len(parts) > 1 else "none"
    if b"transfer-encoding: chunked" in head.lower():
        out, rest = b"", body
        while rest:
            size, _, rest = rest.partition(b"\r\n")
            n = int(size.split(b";")[0] or b"0", 16)
            if n == 0:
                break
            out, rest = out + rest[:n], rest[n + 2:]
        body = out
    if status != want_status:
        return "status %s, want %s: %r" % (status, want_status, body[:160])
    try:
        j = json.loads(body)
    except ValueError:
        return "the answer is not JSON: %r" % body[:160]
    if want_code != "-":
        err = j.get("error") if isinstance(j, dict) else None
        if not isinstance(err, dict) or err.get("code") != want_code or not err.get("message"):
            return "error %r, want code %s" % (err, want_code)
    for k, v in c["fields"].items():
        if not isinstance(j, dict) or str(j.get(k)) != v:
            return "field %s = %r, want %r" % (k, j.get(k) if isinstance(j, dict) else None, v)
    return None


for c in parse(corpus):
    try:
        why = check(c, run(c))
    except OSError as e:
        why = "error: %s" % e
    print("ok - %s" % c["name"] if why is None else "not ok - %s: %s" % (c["name"], why))
    if "creates" in c:
        print("creates: %s" % c["creates"])
