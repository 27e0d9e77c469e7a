#!/usr/bin/env python3
"""reliability.fork - fork under heaptap (issue 5: fork).

  1. A forked child keeps working, dumps under its own pid (heaptap.<child>.0001
     through the API, .0002 through the signal and its own, new flusher); the
     parent's own first dump is still .0001 and holds no child allocations.
  2. glibc tst-malloc-fork-deadlock shape (fork threads, malloc threads,
     getline, fflush(NULL)) at HEAPTAP_RATE=1 with 10 ms periodic dumps: no
     deadlock, every child exits 17.
  3. glibc tst-mallocfork2 shape: a single-threaded program forks from a
     signal handler while its main loop mallocs. Run without heaptap, with
     heaptap and sampling off, and with heaptap at the default rate.
  4. A fork nested in a fork on one thread (each child signals the parent at
     once; the handler forks while the parent's fork() is still in its
     handlers): no hang, in the no-thread mode at the default rate and rate 1.
"""
import os
import signal

import htlib
import rlib
from rlib import Failure, Proc, check_outdir


def body(ctx):
    ctx.need_protoc()
    prog = ctx.example("rel_fork")

    # 1. child dumps under its own pid
    d = ctx.tmpdir("fork-child")
    p = Proc(ctx, [prog, "child", d], outdir=d, stdin=False)
    p.wait(60)
    v = p.values()
    ctx.check(p.returncode == 0, "fork child: program exits 0", p.transcript())
    m = [l for l in p.out if l.startswith("child pid=")]
    if not m:
        raise Failure("child printed no pid\n" + p.transcript())
    cpid = int(m[0].split("pid=")[1].split()[0])
    ctx.check(v.get("dump1") == "0", "fork child: heaptap_dump() in the child returns 0",
              p.transcript())
    ctx.check(v.get("signal_dump") == "1",
              "fork child: the dump signal in the child writes .0002 (flusher restarts)",
              p.transcript())
    ctx.check(v.get("child_status") == "0", "fork child: child exits 0")
    ctx.check(v.get("dump") == "0", "fork child: parent dump after the child returns 0")
    finals = check_outdir(ctx, d, "fork child: ")
    keys = sorted(finals)
    ctx.check((cpid, 1) in finals and (cpid, 2) in finals,
              "fork child: files heaptap.%d.0001/.0002 (child pid)" % cpid, str(keys))
    ctx.check((p.pid, 1) in finals and (p.pid, 2) not in finals,
              "fork child: parent writes its own .0001 only", str(keys))
    ctx.check(all(k[0] in (cpid, p.pid) for k in keys), "fork child: no other names", str(keys))
    if (p.pid, 1) in finals and (cpid, 1) in finals:
        par = ctx.decode(finals[(p.pid, 1)]["heap"])
        chi = ctx.decode(finals[(cpid, 1)]["heap"])
        ctx.check(par.anywhere_total("alloc_objects", "child_alloc") == 0,
                  "fork child: parent profile has no child_alloc samples")
        ctx.check(any(htlib.fn_matches(n, "child_alloc") for s in chi.samples
                      for n in chi.stack(s)),
                  "fork child: child profile has child_alloc samples")
        tp = ctx.decode(finals[(cpid, 1)]["threads"])
        ctx.check(tp.total("threads") == 1, "fork child: child thread profile counts 1 thread",
                  "got %d" % tp.total("threads"))

    # 2. tst-malloc-fork-deadlock shape, repeated
    secs = rlib.scale(2, 20)
    for rep in range(rlib.scale(3, 5)):
        d = ctx.tmpdir("fork-deadlock")
        p = Proc(ctx, [prog, "deadlock", secs], outdir=d, stdin=False,
                 env={"HEAPTAP_RATE": "1", "HEAPTAP_INTERVAL": "10ms"})
        p.wait(secs + 30)
        ctx.check(p.returncode == 0 and "bad_children=0" in p.stdout,
                  "fork deadlock shape #%d: no deadlock, every child exits 17 (%s)" % (
                      rep + 1, p.values().get("forks")), p.transcript())
        check_outdir(ctx, d, "fork deadlock #%d: " % (rep + 1), allow_tmp=True)

    # 3. fork from a signal handler (single-threaded program). glibc's fork
    # is async-signal-safe only while the process has one thread: if any
    # thread were running, a fork from a handler that interrupted malloc
    # would wait forever for the arena lock the interrupted malloc holds.
    # heaptap runs a thread whenever a dump trigger needs one (the dump
    # signal or an interval), so that the signal is answered in every
    # process; in the no-thread mode (HEAPTAP_SIGNAL=none, no interval) such
    # a program stays single-threaded while heaptap samples it, sampling off
    # or not.
    nsig = rlib.scale(1500, 10000)
    for label, preload, env in (("without heaptap (baseline)", False, {}),
                                ("under heaptap, no-thread mode, sampling off", True,
                                 {"HEAPTAP_SIGNAL": "none", "HEAPTAP_RATE": "0"}),
                                ("under heaptap, no-thread mode, default rate", True,
                                 {"HEAPTAP_SIGNAL": "none"}),
                                ("under heaptap, no-thread mode, rate 1", True,
                                 {"HEAPTAP_SIGNAL": "none", "HEAPTAP_RATE": "1"})):
        d = ctx.tmpdir("fork-sig")
        p = Proc(ctx, [prog, "sigfork", nsig], outdir=d, preload=preload, stdin=False, env=env)
        what = "sigfork %s: completes and stays single-threaded" % label
        try:
            p.wait(25)
            ctx.check(p.returncode == 0 and p.values().get("tasks") == "1", what,
                      p.transcript())
        except Failure as e:
            ctx.check(False, what, str(e))

    # 4. a fork nested in a fork on one thread: each child signals the parent
    # at once, so the handler's fork mostly runs while the parent's own
    # fork() is still between its prepare and parent handlers. heaptap's
    # prepare handler must not wait for a lock its own outer call holds.
    nfork = rlib.scale(1000, 10000)
    for label, preload, env in (("without heaptap (baseline)", False, {}),
                                ("under heaptap, no-thread mode, default rate", True,
                                 {"HEAPTAP_SIGNAL": "none"}),
                                ("under heaptap, no-thread mode, rate 1", True,
                                 {"HEAPTAP_SIGNAL": "none", "HEAPTAP_RATE": "1"})):
        d = ctx.tmpdir("fork-nest")
        p = Proc(ctx, [prog, "nestfork", nfork], outdir=d, preload=preload, stdin=False,
                 env=env)
        what = "nestfork %s: %d forks, each answered by a fork from the handler" % (label,
                                                                                    nfork)
        try:
            p.wait(rlib.scale(30, 300))
            v = p.values()
            ctx.check(p.returncode == 0 and v.get("signals") == str(nfork) and
                      v.get("handler_failures") == "0" and v.get("tasks") == "1", what,
                      p.transcript())
        except Failure as e:
            ctx.check(False, what, str(e))


if __name__ == "__main__":
    rlib.main(body, __doc__)
