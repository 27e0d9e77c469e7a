#!/usr/bin/env python3
"""reliability.churn - 20,000 threads (issue 5: threads, resources).

Threads run 8 at a time and end in turn by return (joined), detached return,
pthread_exit and cancellation; each allocates 10 blocks. At HEAPTAP_RATE=1:

  * heaptap's own memory (heaptap_stats own_bytes), the process's mapping
    count and RSS after 20,000 ended threads are not above the figures after
    5,000 (10% + 256 KiB slack): nothing is kept per ended thread;
  * every allocation is counted exactly (no thread's samples lost) and, with
    all blocks freed, nothing stays in use;
  * the final thread profile counts exactly the live threads: the main
    thread and the 5 threads live_creator started;
  * a second run that leaks 5 blocks per thread counts the in-use blocks
    exactly; a third at the default rate keeps memory flat too.
"""
import re

import rlib
from rlib import Proc, check_outdir


def figures(line):
    return {k: int(v) for k, v in re.findall(r"(\w+)=(-?\d+)", line)}


def run(ctx, total, check, leak, rate, tag):
    d = ctx.tmpdir("churn")
    env = {"HEAPTAP_RATE": str(rate)} if rate else {}
    p = Proc(ctx, [ctx.example("rel_churn"), total, check, "leak" if leak else "noleak"],
             outdir=d, env=env, stdin=False)
    p.wait(rlib.scale(200, 1500))
    ctx.check(p.returncode == 0, "%s: %d threads churned in %ss" % (
        tag, total, p.values().get("churn_secs")), p.transcript())
    cp = [figures(l) for l in p.out if l.startswith("checkpoint ")]
    fin = [figures(l) for l in p.out if l.startswith("final ")]
    live = [figures(l) for l in p.out if l.startswith("live ")]
    if not (cp and fin and live):
        ctx.check(False, "%s: checkpoints printed" % tag, p.transcript())
        return
    a, b = cp[0], fin[0]
    if not leak:
        for key, slack in (("own_bytes", 256 << 10), ("maps", 8), ("rss_kb", 6144)):
            ctx.check(b[key] <= a[key] * 1.10 + slack,
                      "%s: %s after %d ended threads (%d) not above after %d (%d)" % (
                          tag, key, b["ended"], b[key], a["ended"], a[key]))
    ctx.check(b["dropped"] == 0, "%s: no samples dropped" % tag, str(b))
    ctx.check(live[0]["live_threads"] == 6, "%s: heaptap_stats live_threads == 6 (main + 5)" %
              tag, str(live[0]))
    finals = check_outdir(ctx, d, tag + ": ")
    last = max(k for k in finals if k[0] == p.pid)
    thr = ctx.decode(finals[last]["threads"])
    ctx.check(thr.total("threads") == 6, "%s: final thread profile counts exactly 6" % tag,
              "got %d" % thr.total("threads"))
    ctx.check(thr.anywhere_total("threads", "live_creator") == 5,
              "%s: 5 of them created from live_creator" % tag,
              "got %d" % thr.anywhere_total("threads", "live_creator"))
    if rate == 1:
        heap = ctx.decode(finals[last]["heap"])
        want = figures([l for l in p.out if l.startswith("expect_churn")][0])
        got_a = heap.leaf_total("alloc_objects", "churn_alloc")
        got_i = heap.leaf_total("inuse_objects", "churn_alloc")
        ctx.check(got_a == want["alloc_objects"], "%s: churn_alloc alloc_objects == %d" % (
            tag, want["alloc_objects"]), "got %d" % got_a)
        ctx.check(got_i == want["inuse_objects"], "%s: churn_alloc inuse_objects == %d" % (
            tag, want["inuse_objects"]), "got %d" % got_i)


def body(ctx):
    ctx.need_protoc()
    total = rlib.scale(20000, 200000)
    run(ctx, total, total // 4, False, 1, "churn rate 1")
    run(ctx, rlib.scale(4000, 40000), rlib.scale(1000, 10000), True, 1, "churn leaking")
    run(ctx, total, total // 4, False, 0, "churn default rate")


if __name__ == "__main__":
    rlib.main(body, __doc__)
