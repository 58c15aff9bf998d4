#!/usr/bin/env python3
"""An operator's long transaction on the manager's database, for the fault tests.

hold_db.py DB read|write READY RELEASE
Opens DB, starts a read transaction (BEGIN; SELECT) or takes the write lock (BEGIN IMMEDIATE),
creates the file READY, and holds it until the file RELEASE exists (at most 120 s), then ends
the transaction. Exits 0, or 1 if the transaction could not be started."""
import os
import sqlite3
import sys
import time

db, mode, ready, release = sys.argv[1:5]
con = sqlite3.connect(db, isolation_level=None, timeout=10)
try:
    if mode == "write":
        con.execute("BEGIN IMMEDIATE")
    else:
        con.execute("BEGIN")
        con.execute("SELECT count(*) FROM executions").fetchone()
except sqlite3.Error as e:
    print(f"hold_db: {e}", file=sys.stderr)
    sys.exit(1)
open(ready, "w").close()
deadline = time.monotonic() + 120
while not os.path.exists(release) and time.monotonic() < deadline:
    time.sleep(0.02)
con.execute("COMMIT")
con.close()
