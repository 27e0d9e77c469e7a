#!/usr/bin/env python3
"""reliability.threads - thread exits and early threads (issue 5: threads).

At HEAPTAP_RATE=1 (exact counts):
  1. threads that return, pthread_exit, are cancelled inside a malloc/free
     loop, run detached, or are joined: every leaked block counted exactly;
     the thread profile counts only the main thread afterwards.
  2. frees and mallocs after heaptap's own thread-exit hook: a C++
     thread_local destructor and a pthread key destructor that re-arms
     itself for 4 rounds allocate; strerror_l/strsignal make glibc free in
     __libc_thread_freeres. No crash; every destructor allocation counted.
  3. allocations before main: from this program's constructor and a thread
     it starts, and from a DT_NEEDED library's constructor and its threads.
     All counted; the thread profile counts those threads.
  4. exit(0) from one thread while three others allocate, with
     HEAPTAP_AT_EXIT=1: ends promptly, exit status 0, the at-exit dump
     decodes completely.
  5. a thread with a cancellation request pending allocates while the main
     thread dumps back to back (its ring fills, heaptap waits for room):
     heaptap is never a cancellation point, so the thread makes every pair
     and is cancelled at its own pthread_testcancel.
"""
import htlib
import rlib
from rlib import Proc, check_outdir


def run_exact(ctx, prog, args, tag, timeout=90):
    d = ctx.tmpdir("threads-" + tag)
    p = Proc(ctx, [prog] + args, outdir=d, stdin=False, env={"HEAPTAP_RATE": "1"})
    p.wait(timeout)
    ctx.check(p.returncode == 0 and p.values().get("dump") == "0",
              "%s: program exits 0, dump succeeds" % tag, p.transcript())
    finals = check_outdir(ctx, d, tag + ": ")
    key = (p.pid, 1)
    if key not in finals:
        ctx.check(False, "%s: dump .0001 written" % tag, str(sorted(finals)))
        return
    heap = ctx.decode(finals[key]["heap"])
    htlib.compare_expects(ctx, heap, htlib.parse_expects(p.out), mode="leaf", label=tag + ": ")
    htlib.check_no_drops(ctx, heap, tag + ": ")
    want = int(p.values().get("live_threads", -1))
    thr = ctx.decode(finals[key]["threads"])
    ctx.check(thr.total("threads") == want, "%s: thread profile counts %d live threads" % (
        tag, want), "got %d; comments %s" % (thr.total("threads"), thr.comments))


def body(ctx):
    ctx.need_protoc()
    prog = ctx.example("rel_threads")
    run_exact(ctx, prog, ["orders", rlib.scale(60, 2000)], "orders")
    run_exact(ctx, prog, ["dtors", rlib.scale(40, 2000)], "dtors")
    run_exact(ctx, prog, ["ctor"], "ctor")

    for rep in range(rlib.scale(3, 30)):
        d = ctx.tmpdir("threads-exit")
        p = Proc(ctx, [prog, "exitthread"], outdir=d, stdin=False,
                 env={"HEAPTAP_RATE": "1", "HEAPTAP_AT_EXIT": "1"})
        p.wait(30)
        ctx.check(p.returncode == 0 and p.elapsed < 15,
                  "exitthread #%d: exit(0) from a thread while others allocate ends in %.1fs" %
                  (rep + 1, p.elapsed or -1), p.transcript())
        finals = check_outdir(ctx, d, "exitthread #%d: " % (rep + 1), allow_tmp=True)
        ctx.check((p.pid, 1) in finals, "exitthread #%d: the at-exit dump is there" % (rep + 1),
                  str(sorted(finals)))

    n = rlib.scale(300000, 3000000)
    for rep in range(2):
        d = ctx.tmpdir("threads-nocancel")
        p = Proc(ctx, [prog, "nocancel", str(n)], outdir=d, stdin=False,
                 env={"HEAPTAP_RATE": "1"})
        p.wait(60)
        v = p.values()
        ctx.check(p.returncode == 0 and v.get("nocancel_done") == "1" and
                  v.get("nocancel_pairs") == str(n) and v.get("cancelled") == "1",
                  "nocancel #%d: a thread with a cancellation pending makes all %d pairs "
                  "inside heaptap and is cancelled at its own pthread_testcancel "
                  "(%s dumps meanwhile)" % (rep + 1, n, v.get("dumps_meanwhile")),
                  p.transcript())


if __name__ == "__main__":
    rlib.main(body, __doc__)
