#!/usr/bin/env python3
"""reliability.unwind - stacks through code without unwind info (issue 5).

rel_unwind allocates through an assembly frame with no CFI, as JIT code
would: libunwind falls back to the frame-pointer chain, and heaptap checks
each word it reads without an fd (process_vm_readv on itself; rt_sigprocmask
when a seccomp filter refuses that). At HEAPTAP_RATE=1:

  * the program runs to the end with and without heaptap (a read through a
    frame pointer into a PROT_NONE page, an unmapped range or garbage would
    kill it inside malloc if the check let it through);
  * every block is counted at its allocating function;
  * through a real frame pointer the stack goes on past the frame to main,
    so the check does not refuse good memory;
  * through a poisoned one the stack stops at the frame without unwind info;
  * with process_vm_readv refused by a seccomp filter, the same: heaptap
    tries it once and checks with rt_sigprocmask from then on, silently;
  * at the default rate, short-lived threads that take one sample each (their
    stacks walked step by step rather than through libunwind's per-thread
    frame cache) get whole stacks: allocator's caller, the thread function,
    and the estimate of their 8 MiB blocks is right to 2% (a block goes
    unsampled with probability e^-16);
  * small stacks: threads with PTHREAD_STACK_MIN stacks, and a signal handler
    on an 8 KiB sigaltstack, allocate (sampled) under heaptap as they do
    without it; at rate 1 the handler's allocations are counted exactly;
  * threads that call pthread_getattr_np (which allocates, for the main
    thread while reading /proc/self/maps) while sampled finish (ddprof's
    pthread_deadlock shape).
"""
import htlib
import rlib
from rlib import check_outdir


def body(ctx):
    ctx.need_protoc()
    prog = ctx.example("rel_unwind")
    rlib.baseline(ctx, [prog])
    for mode in ("", "seccomp"):
        tag = (mode or "default") + ": "
        d = ctx.tmpdir("unwind")
        p = rlib.run(ctx, [prog] + ([mode] if mode else []), outdir=d,
                     env={"HEAPTAP_RATE": "1"}, timeout=60)
        v = p.values()
        if mode and v.get("seccomp") == "failed":
            ctx.note("seccomp filters are not available here: %s" % p.transcript())
            continue
        ctx.check(p.returncode == 0 and v.get("done") == "1" and v.get("dump") == "0",
                  tag + "runs to the end under heaptap, dump written", p.transcript())
        lines = p.heaptap_lines()
        ctx.check(not lines, tag + "heaptap says nothing", str(lines))
        if mode:
            ctx.check(v.get("sigsys") == "1",
                      tag + "heaptap tried process_vm_readv once, then checked memory "
                      "the other way", p.transcript())
        finals = check_outdir(ctx, d, tag)
        if (p.pid, 1) not in finals:
            ctx.check(False, tag + "dump written", str(sorted(finals)))
            continue
        prof = ctx.decode(finals[(p.pid, 1)]["heap"])
        htlib.compare_expects(ctx, prof, htlib.parse_expects(p.out), mode="leaf", label=tag)
        for fn in ("alloc_good", "alloc_protnone", "alloc_unmapped", "alloc_garbage"):
            stacks = [prof.stack(s) for s in prof.samples
                      if prof.stack(s) and prof.stack(s)[0] == fn]
            through = stacks and all(len(st) > 1 and st[1] == "nocfi_call" for st in stacks)
            ctx.check(through, tag + "%s's stacks go through nocfi_call" % fn,
                      htlib.dump_stacks(prof, fn))
            reach = stacks and all("main" in st for st in stacks)
            if fn == "alloc_good":
                ctx.check(reach, tag + "through a real frame pointer the stack reaches main",
                          htlib.dump_stacks(prof, fn))
            else:
                ctx.check(stacks and not any("main" in st for st in stacks),
                          tag + "%s: the walk stops at the poisoned frame pointer" % fn,
                          htlib.dump_stacks(prof, fn))

    threads_part(ctx, prog)
    smallstack_part(ctx, prog)
    for rate in ("1", "524288"):
        p = rlib.run(ctx, [prog, "getattr"], env={"HEAPTAP_RATE": rate},
                     outdir=ctx.tmpdir("unwind-getattr"), timeout=60)
        v = p.values()
        ctx.check(p.returncode == 0 and v.get("done") == "1" and
                  v.get("getattr_failures") == "0",
                  "getattr, rate %s: 9 threads calling pthread_getattr_np while sampled "
                  "finish (no deadlock)" % rate, p.transcript())


def smallstack_part(ctx, prog):
    rlib.baseline(ctx, [prog, "smallstack"], "smallstack ")
    for rate in ("1", "524288"):
        tag = "smallstack, rate %s: " % rate
        d = ctx.tmpdir("unwind-small")
        p = rlib.run(ctx, [prog, "smallstack"], outdir=d, env={"HEAPTAP_RATE": rate},
                     timeout=60)
        v = p.values()
        ctx.check(p.returncode == 0 and v.get("alt_hits") == "50" and v.get("dump") == "0",
                  tag + "PTHREAD_STACK_MIN threads and a handler on an 8 KiB sigaltstack "
                  "allocate under heaptap", p.transcript())
        finals = check_outdir(ctx, d, tag)
        if rate == "1" and (p.pid, 1) in finals:
            prof = ctx.decode(finals[(p.pid, 1)]["heap"])
            htlib.compare_expects(ctx, prof, htlib.parse_expects(p.out), mode="leaf",
                                  label=tag)


def threads_part(ctx, prog):
    d = ctx.tmpdir("unwind-threads")
    p = rlib.run(ctx, [prog, "threads"], outdir=d, timeout=60)
    v = p.values()
    ctx.check(p.returncode == 0 and v.get("done") == "1" and v.get("dump") == "0",
              "threads: runs to the end, dump written", p.transcript())
    finals = check_outdir(ctx, d, "threads: ")
    if (p.pid, 1) not in finals:
        ctx.check(False, "threads: dump written", str(sorted(finals)))
        return
    prof = ctx.decode(finals[(p.pid, 1)]["heap"])
    want = int(v.get("big_bytes", 0))
    got = prof.leaf_total("inuse_space", "thread_big_alloc")
    ctx.check(want and abs(got - want) <= 0.02 * want,
              "threads: thread_big_alloc inuse_space %d within 2%% of %d" % (got, want),
              htlib.dump_stacks(prof))
    stacks = [prof.stack(s) for s in prof.samples_with("thread_big_alloc")]
    ctx.check(stacks and all(len(st) > 1 and st[0] == "thread_big_alloc" and st[1] == "worker"
                             for st in stacks),
              "threads: every stack is thread_big_alloc <- worker <- ...",
              htlib.dump_stacks(prof, "thread_big_alloc"))


if __name__ == "__main__":
    rlib.main(body, __doc__)
