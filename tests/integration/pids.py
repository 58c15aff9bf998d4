#!/usr/bin/env python3
"""The processes of one test stack, for the tests' checks that nothing is left behind.

pids.py TDIR [responders|runs|all]
A process belongs to the stack under TDIR when its command line names TDIR (the fake opencode,
nginx), its HOME lies there (every agent process: ocpm sets HOME in the agent's home), or it is
ocpmd (the manager, or a responder `ocpmd --responder N`) whose environment names the stack's
state directory. Prints one
pid a line; never this process or its parent (the test shell and its subshells share the
environment, but not those command lines or that HOME)."""
import os
import sys

tdir, what = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "all")
skip = {os.getpid(), os.getppid()}
for name in os.listdir("/proc"):
    if not name.isdigit() or int(name) in skip:
        continue
    try:
        with open("/proc/%s/cmdline" % name, "rb") as f:
            cmd = f.read().decode("utf-8", "replace").split("\0")
        env = []
        try:
            with open("/proc/%s/environ" % name, "rb") as f:
                env = f.read().decode("utf-8", "replace").split("\0")
        except OSError:
            pass
    except OSError:
        continue
    ours = any(e.startswith("OCPM_STATE_DIR=" + tdir) for e in env)
    responder = "--responder" in cmd and ours
    manager = ours and os.path.basename(cmd[0]) == "ocpmd" and not responder
    agent = any(e.startswith("HOME=" + tdir) for e in env)
    named = any(tdir in c for c in cmd)
    # An `opencode run` (the real one or the fake): not any agent process with a "run" argument
    # (git runs `git maintenance run --auto` after a commit, as the agent, in the workspace).
    run = agent and "run" in cmd and any("opencode" in os.path.basename(c) for c in cmd[:2])
    if (what == "responders" and responder) or (what == "runs" and run) or \
            (what == "all" and (manager or responder or agent or named)):
        print(name)
