#!/usr/bin/env python3
"""A raw FastCGI client: speaks to a responder socket directly, as anything that can reach it could.

Usage: fcgi_client.py SOCKET METHOD PATH [REMOTE_USER] [BODY]
Prints the responder's answer (CGI headers and body) and exits 0, or prints why and exits 2 when the
socket cannot be reached (permission denied, refused).
"""
import socket
import struct
import sys


def record(rtype, rid, content):
    out = b""
    # A record holds at most 65535 bytes; longer content is split.
    for i in range(0, max(len(content), 1), 65535):
        chunk = content[i:i + 65535]
        out += struct.pack(">BBHHBx", 1, rtype, rid, len(chunk), 0) + chunk
        if not content:
            break
    return out


def pairs(params):
    out = b""
    for k, v in params.items():
        k, v = k.encode(), v.encode()
        for n in (len(k), len(v)):
            out += struct.pack(">B", n) if n < 128 else struct.pack(">I", n | 0x80000000)
        out += k + v
    return out


def main(argv):
    sock, method, path = argv[1], argv[2], argv[3]
    user = argv[4] if len(argv) > 4 else ""
    body = (argv[5] if len(argv) > 5 else "").encode()
    params = {"REQUEST_METHOD": method, "DOCUMENT_URI": path, "SCRIPT_NAME": path, "REQUEST_URI": path,
              "QUERY_STRING": "", "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body)),
              "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1"}
    if user:
        params["REMOTE_USER"] = user
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    try:
        s.connect(sock)
    except OSError as e:
        print("cannot connect: %s" % type(e).__name__)
        return 2
    msg = record(1, 1, struct.pack(">HB5x", 1, 0))  # BEGIN_REQUEST, responder, no keep-alive
    msg += record(4, 1, pairs(params)) + record(4, 1, b"")
    if body:
        msg += record(5, 1, body)
    msg += record(5, 1, b"")
    s.sendall(msg)
    out, buf = b"", b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
        while len(buf) >= 8:
            _, rtype, _, clen, plen = struct.unpack(">BBHHBx", buf[:8])
            if len(buf) < 8 + clen + plen:
                break
            if rtype == 6:  # STDOUT
                out += buf[8:8 + clen]
            buf = buf[8 + clen + plen:]
    sys.stdout.write(out.decode("utf-8", "replace"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
