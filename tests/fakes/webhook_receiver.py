#!/usr/bin/env python3
"""A webhook receiver for ocpm's tests: logs every request it gets and fails the first ones.

Usage: webhook_receiver.py --log FILE [--fail-first N] [--port 0]
Each request is appended to FILE as one JSON line: {"path", "headers", "body", "answered"}. The first
N tries of each delivery (by X-Ocpm-Delivery) are answered 500, later ones 204. Prints
"webhook receiver listening on http://127.0.0.1:PORT" once ready.
"""
import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
TRIES = {}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n).decode("utf-8", "replace")
        delivery = self.headers.get("X-Ocpm-Delivery", "")
        with LOCK:
            TRIES[delivery] = TRIES.get(delivery, 0) + 1
            code = 500 if TRIES[delivery] <= self.server.fail_first else 204
            with open(self.server.log_path, "a") as f:
                f.write(json.dumps({"path": self.path, "headers": dict(self.headers), "body": body,
                                    "answered": code}) + "\n")
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--log", required=True)
    ap.add_argument("--fail-first", type=int, default=0)
    a = ap.parse_args()
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    srv.daemon_threads = True
    srv.log_path = a.log
    srv.fail_first = a.fail_first
    print("webhook receiver listening on http://127.0.0.1:%d" % srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
