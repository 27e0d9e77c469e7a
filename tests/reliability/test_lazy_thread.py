#!/usr/bin/env python3
"""reliability.lazy_thread - heaptap's thread (issue 5: the lazy thread).

  1. `unshare --user --map-root-user true` (needs a single-threaded caller)
     works under heaptap at the default rate. Skipped when it does not work
     without heaptap either (no user namespaces here).
  2. heaptrack signals.cpp shape: every thread blocks every signal except
     one signal thread; heaptap samples (so its thread runs). The
     heaptap-flush thread's SigBlk blocks every blockable signal, and every
     process-directed SIGUSR1/SIGHUP/SIGTERM is handled on the signal thread.
  3. An idle program that has taken no sample, with a thread of its own or
     single-threaded: SIGUSR2 is served within seconds (heaptap's thread
     runs from start-up whenever the dump signal's handler is installed),
     and exactly one complete dump is written. In the no-thread mode
     (HEAPTAP_SIGNAL=none) heaptap starts no thread at all.
"""
import os
import shutil
import signal
import subprocess
import time

import rlib
from rlib import Proc, Skip, check_outdir, thread_names, task_status

# Signals the kernel or glibc never lets a thread block: SIGKILL, SIGSTOP,
# and glibc's internal SIGCANCEL (32) and SIGSETXID (33).
UNBLOCKABLE = {9, 19, 32, 33}


def blocked(sigblk_hex):
    v = int(sigblk_hex, 16)
    return {s for s in range(1, 65) if v & (1 << (s - 1))}


def body(ctx):
    prog = ctx.example("rel_lazy")

    # 1. unshare --user
    unshare = shutil.which("unshare")
    if unshare:
        argv = [unshare, "--user", "--map-root-user", "true"]
        base = subprocess.run(argv, env=rlib.clean_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=30)
        if base.returncode != 0:
            ctx.note("unshare --user does not work without heaptap here: %s" %
                     base.stderr.decode().strip())
            unshare = None
    if unshare:
        for extra in ({}, {"HEAPTAP_INTERVAL": "0", "HEAPTAP_AT_EXIT": "1"}):
            d = ctx.tmpdir("unshare")
            p = rlib.run(ctx, argv, outdir=d, env=extra, timeout=30)
            ctx.check(p.returncode == 0,
                      "unshare --user --map-root-user true under heaptap %s" % (extra or
                                                                               "(defaults)"),
                      p.transcript())
    else:
        ctx.note("skipping the unshare check")

    # 2. the application's signal thread
    d = ctx.tmpdir("sigthread")
    p = Proc(ctx, [prog], outdir=d, stdin=False,
             env={"HEAPTAP_RATE": "1", "HEAPTAP_INTERVAL": "50ms"})
    p.wait_line(r"^ready", 20)
    flush = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not flush:
        flush = [t for t, n in thread_names(p.pid).items() if n.startswith("heaptap")]
        time.sleep(0.05)
    ctx.check(len(flush) == 1, "sigthread: heaptap-flush thread running", str(thread_names(p.pid)))
    for tid in flush:
        st = task_status(p.pid, tid)
        missing = sorted(set(range(1, 65)) - UNBLOCKABLE - blocked(st["SigBlk"]))
        ctx.check(not missing, "sigthread: heaptap-flush SigBlk %s blocks every blockable "
                  "signal" % st["SigBlk"], "unblocked: %s" % missing)
    for i in range(20):
        p.send(signal.SIGUSR1)
        p.send(signal.SIGHUP)
        time.sleep(0.01)
    time.sleep(0.2)
    p.send(signal.SIGTERM)
    p.wait(30)
    v = p.values()
    ctx.check(p.returncode == 0 and v.get("wrong_thread") == "0" and int(v.get("usr1", 0)) > 0
              and int(v.get("hup", 0)) > 0,
              "sigthread: every process-directed signal handled on the app's signal thread, "
              "the program exits through its own path", p.transcript())
    ctx.check(not p.heaptap_lines(), "sigthread: heaptap says nothing", str(p.heaptap_lines()))

    # 3. an idle program, no sample taken yet
    for threads in (1, 0):
        tag = "idle, %d thread(s) of its own: " % threads
        d = ctx.tmpdir("idle")
        p = Proc(ctx, [prog, "idle", threads], outdir=d, stdin=False)
        p.wait_line(r"^ready", 20)
        time.sleep(0.2)
        p.send(signal.SIGUSR2)
        heap, _ = p.profile_path(1, "heap"), p.profile_path(1, "threads")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not os.path.exists(heap):
            time.sleep(0.05)
        ctx.check(os.path.exists(heap),
                  tag + "SIGUSR2 is served while the program idles", str(os.listdir(d)))
        p.send(signal.SIGTERM)
        p.wait(20)
        ctx.check(p.returncode == 0 and p.values().get("stopped") == "1",
                  tag + "the program exits through its own path", p.transcript())
        finals = check_outdir(ctx, d, tag)
        ctx.check((p.pid, 1) in finals and (p.pid, 2) not in finals,
                  tag + "exactly one dump, complete", str(sorted(finals)))

    # 4. the no-thread mode: no thread of heaptap's, ever.
    d = ctx.tmpdir("nothread")
    p = Proc(ctx, [prog, "idle", 0], outdir=d, stdin=False,
             env={"HEAPTAP_SIGNAL": "none", "HEAPTAP_RATE": "1"})
    p.wait_line(r"^ready", 20)
    time.sleep(0.3)
    names = thread_names(p.pid)
    ctx.check(len(names) == 1, "no-thread mode: the program keeps its one thread",
              str(names))
    p.send(signal.SIGTERM)
    p.wait(20)
    ctx.check(p.returncode == 0, "no-thread mode: the program exits through its own path",
              p.transcript())


if __name__ == "__main__":
    rlib.main(body, __doc__)
