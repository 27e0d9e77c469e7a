#!/usr/bin/env python3
"""reliability.longjmp - siglongjmp out of heaptap's sampled path
(reliability matrix item S04).

rel_longjmp mallocs and frees in a loop while a 200 us interval timer's
handler siglongjmps back to the loop whenever the interrupted instruction
lies inside libheaptap.so (only there: jumping out of libc or libunwind is
undefined for any program). Afterwards, from a separate function, it keeps
K blocks, reads heaptap's figures (heaptap_stats) and dumps.

  1. Without heaptap the program runs and finishes (no jumps: there is no
     libheaptap.so), and its K blocks lie in the [heap] mapping (glibc's
     main arena), which is what the later checks rely on.
  2. HEAPTAP_RATE=1 (every allocation sampled and unwound, so the timer
     often lands in heaptap's sampled path): the program finishes promptly,
     jumps > 0, and heaptap's per-thread busy mark was not left set: the
     final function's K blocks of 100 B are counted exactly in the dump
     (leaf final_alloc, all four values) and every block came from the
     program's allocator (inside [heap], not heaptap's own region); the
     thread's cancellation state is enabled again (the sampled path turns
     it off while it unwinds).
  3. The default rate, 1-64 KiB blocks in the loop and K blocks of 32 KiB at
     the end: finishes, the final function's in-use estimate is within
     [0.5, 1.6] of the truth (~60 samples expected), the blocks in [heap],
     cancellation enabled.
Where the jumps were taken (functions in libheaptap.so, by addr2line; the
first one matters most) is printed for each run, and heaptap_stats' own_bytes
and samples from before the loop to the end (own_bytes grows ~130 B per
sample at rate 1 in a good run, about what a block of 100 B served from
heaptap's own memory would cost, so it is a note, not a check). The program
prints what needs no heaptap lock first: a run that hangs (a lock left held
by an abandoned frame) still shows it, with gdb backtraces of its threads.
If the timer never lands inside heaptap the run is noted, and the
test is skipped only if that happens in every run.
"""
import collections
import shutil
import subprocess

import rlib
from rlib import Failure, Proc, Skip, check_outdir

K = 1000
# The loop stops after at most `secs` (8 s quick); the rest takes ~1 s.
TIMEOUT = rlib.scale(25, 90)


def sites(ctx, p):
    """The first jump site, then 'count x func<-inlined-in (file:line)' for
    each, most first (the program prints them in the order first taken)."""
    rows = []
    for line in p.out:
        if line.startswith("jump_at="):
            v = dict(kv.split("=", 1) for kv in line.split())
            rows.append((int(v["count"]), v["jump_at"]))
    if not rows:
        return []
    names = {}
    if shutil.which("addr2line"):
        # One address at a time: with -i, a site may print several pairs.
        for _, a in rows:
            r = subprocess.run(["addr2line", "-f", "-i", "-e", ctx.lib, a],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            out = r.stdout.decode("utf-8", "replace").split("\n")
            fns = out[0::2][:4]
            where = out[1].rsplit("/", 1)[-1] if len(out) > 1 else "?"
            names[a] = "%s (%s)" % ("<-".join(f for f in fns if f), where)
    agg = collections.Counter()
    for c, a in rows:
        agg[names.get(a, a)] += c
    # The first jump matters most: any later ones may be a consequence.
    return (["first at %s" % names.get(rows[0][1], rows[0][1])] +
            ["%4d x %s" % (c, n) for n, c in agg.most_common(12)])


def one(ctx, prog, tag, args, env, preload=True):
    """Run once; (Proc, key=values, outdir, hang report or None)."""
    d = ctx.tmpdir("longjmp")
    p = Proc(ctx, [prog] + [str(a) for a in args], outdir=d, env=env, preload=preload,
             stdin=False)
    hung = None
    try:
        p.wait(TIMEOUT)
    except Failure as e:
        hung = str(e)
    v = p.values()
    for s in sites(ctx, p):
        ctx.note("%s: jumps: %s" % (tag, s))
    if hung is not None:
        ctx.check(False, "%s: finishes within %ds" % (tag, TIMEOUT), hung)
    else:
        ctx.check(p.returncode == 0 and v.get("done") == "1",
                  "%s: finishes (%s jumps, %s timer ticks, %s iterations, %.1fs)" % (
                      tag, v.get("jumps"), v.get("ticks"), v.get("iterations"), p.elapsed),
                  p.transcript())
    return p, v, d, hung


def check_run(ctx, tag, run, heap_ok, final):
    """The checks of one run under heaptap; final=None: exact (rate 1)."""
    p, v, d, hung = run
    jumps = int(v.get("jumps", 0))
    if "jumps" in v and jumps == 0:
        ctx.note("%s: the timer never landed inside libheaptap.so: nothing shown" % tag)
    # Printed before anything that takes a heaptap lock: there even if it hung.
    if heap_ok and "in_heap" in v:
        ctx.check(v.get("in_heap") == str(K),
                  "%s: every final block came from the program's allocator ([heap])" % tag,
                  "%s of %d in [heap]" % (v.get("in_heap"), K))
    if "cancel_enabled" in v:
        ctx.check(v.get("cancel_enabled") == "1",
                  "%s: the thread's cancellation state is enabled again" % tag,
                  "cancel_enabled=%s" % v.get("cancel_enabled"))
    if "own_after" in v:
        ctx.note("%s: heaptap_stats from before the loop to the end: own_bytes %s -> %s, "
                 "samples %s -> %s" % (tag, v.get("own_before"), v.get("own_after"),
                                       v.get("samples_before"), v.get("samples_after")))
    if hung is not None:
        return jumps
    ctx.check(v.get("dump") == "0", "%s: heaptap_dump() succeeds" % tag, p.transcript())
    finals = check_outdir(ctx, d, tag + ": ")
    seqs = sorted(s for (pid, s) in finals if pid == p.pid)
    if not seqs:
        ctx.check(False, "%s: the dump is there" % tag, str(sorted(finals)))
        return jumps
    prof = ctx.decode(finals[(p.pid, seqs[-1])]["heap"])
    if final is None:
        rlib.htlib.compare_expects(ctx, prof, p.expects(), "leaf", tag + ": ")
    else:
        got = prof.leaf_total("inuse_space", "final_alloc")
        want = K * final
        ctx.check(0.5 * want <= got <= 1.6 * want,
                  "%s: final_alloc inuse_space estimate %d within [0.5, 1.6] x %d" % (
                      tag, got, want), rlib.htlib.dump_stacks(prof, "final_alloc"))
    return jumps


def body(ctx):
    ctx.need_protoc()
    prog = ctx.example("rel_longjmp")
    jumps = rlib.scale(100, 2000)
    secs = rlib.scale(8, 60)

    # 1. baseline
    b, bv, _, hung = one(ctx, prog, "without heaptap", [16, 256, 100, K, jumps, secs], {},
                         preload=False)
    if hung is not None or b.returncode != 0:
        raise Failure("the program does not run without heaptap")
    heap_ok = bv.get("in_heap") == str(K)
    if not heap_ok:
        ctx.note("without heaptap only %s of %d blocks lie in [heap]: the [heap] check is "
                 "left out" % (bv.get("in_heap"), K))

    # 2. rate 1, exact
    total = check_run(ctx, "rate 1", one(ctx, prog, "rate 1", [16, 256, 100, K, jumps, secs],
                                         {"HEAPTAP_RATE": "1"}), heap_ok, None)
    # 3. default rate, larger blocks
    final = 32768
    total += check_run(ctx, "default rate",
                       one(ctx, prog, "default rate", [1024, 65536, final, K, jumps, secs], {}),
                       heap_ok, final)
    if total == 0 and not ctx.failures:
        raise Skip("the timer never landed inside libheaptap.so")


if __name__ == "__main__":
    rlib.main(body, __doc__)
