#!/usr/bin/env python3
"""systemd's side of the notify protocol, for the tests: a datagram socket that writes down what it hears.

notify_listener.py SOCKET OUT
SOCKET is a path, or an abstract name when it starts with '@' (as $NOTIFY_SOCKET). OUT is created once
the socket is bound (wait for it before starting the sender). Each datagram becomes one line per field:
    SEQ KERNEL MONO FIELD=VALUE
SEQ counts datagrams from 1 (the fields of one datagram share it), KERNEL is when the sender sent it
(SO_TIMESTAMPNS, unix seconds: immune to this process being scheduled late), MONO is when this process
read it (time.monotonic(), CLOCK_MONOTONIC, the clock of MONOTONIC_USEC). Runs until killed."""
import os
import socket
import struct
import sys
import time

path, out = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
if path.startswith("@"):
    s.bind("\0" + path[1:])
else:
    if os.path.exists(path):
        os.unlink(path)
    s.bind(path)
# Python names it on some builds only; 35 is Linux's SO_TIMESTAMPNS (asm-generic, x86, arm), a
# struct timespec of two 64-bit fields on 64-bit systems.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
f = open(out + ".tmp", "w", buffering=1)
os.rename(out + ".tmp", out)
seq = 0
while True:
    data, anc, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(16))
    mono = time.monotonic()
    kernel = time.time()
    for level, kind, value in anc:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= 16:
            sec, nsec = struct.unpack("qq", value[:16])
            kernel = sec + nsec / 1e9
    seq += 1
    for field in data.decode("utf-8", "replace").split("\n"):
        if field:
            f.write("%d %.6f %.6f %s\n" % (seq, kernel, mono, field))
