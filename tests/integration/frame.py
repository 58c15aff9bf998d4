#!/usr/bin/env python3
"""frame.py SOCKET JSON: send one request frame to the manager's control socket, as a responder or
ocpmctl would (a 4-byte big-endian length, then the JSON), and print the reply frame's JSON."""
import json
import socket
import struct
import sys

s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
req = sys.argv[2].encode()
s.sendall(struct.pack(">I", len(req)) + req)
buf = b""
while len(buf) < 4 or len(buf) < 4 + struct.unpack(">I", buf[:4])[0]:
    chunk = s.recv(65536)
    if not chunk:
        sys.exit("the manager closed the connection")
    buf += chunk
print(json.dumps(json.loads(buf[4:4 + struct.unpack(">I", buf[:4])[0]])))
