#!/usr/bin/env python3
"""reliability.unjoined - threads that ended but were never joined or detached.

rel_unjoined leaves 5 threads ended and unjoined (spawn_unjoined), 3 running
(spawn_running), and settles six more every way glibc offers (pthread_join,
tryjoin, timedjoin, detached at creation, detached by the creator, by
itself). Its first dump must count the 5 under spawn_unjoined with
state=unjoined, the 3 under spawn_running with state=running, none of the
settled ones, and give both totals in the comments; after it joins them all,
the second dump has neither. Without heaptap it runs the same.
"""
import re

import rlib
from rlib import check_outdir


def by_leaf(prof, fn):
    """{state: threads} of samples whose creation stack starts at fn."""
    out = {}
    for s in prof.samples:
        st = prof.stack(s)
        if st and st[0] == fn:
            state = (s["labels"].get("state") or ["<none>"])[0]
            out[state] = out.get(state, 0) + s["values"][0]
    return out


def body(ctx):
    ctx.need_protoc()
    prog = ctx.example("rel_unjoined")
    rlib.baseline(ctx, [prog])
    d = ctx.tmpdir("unjoined")
    p = rlib.run(ctx, [prog], outdir=d, timeout=60)
    v = p.values()
    ctx.check(p.returncode == 0 and v.get("done") == "1" and v.get("dump1") == "0" and
              v.get("dump2") == "0" and v.get("settle_failures") == "0",
              "runs to the end, every join succeeds, both dumps written", p.transcript())
    finals = check_outdir(ctx, d)
    if (p.pid, 1) not in finals or (p.pid, 2) not in finals:
        ctx.check(False, "both dumps written", str(sorted(finals)))
        return
    t1 = ctx.decode(finals[(p.pid, 1)]["threads"])
    t2 = ctx.decode(finals[(p.pid, 2)]["threads"])
    unj, run = int(v["expect_unjoined"]), int(v["expect_running"])
    ctx.check(by_leaf(t1, "spawn_unjoined") == {"unjoined": unj},
              "dump 1: %d ended, unjoined threads under spawn_unjoined, state=unjoined" % unj,
              str(by_leaf(t1, "spawn_unjoined")))
    ctx.check(by_leaf(t1, "spawn_running") == {"running": run},
              "dump 1: %d live threads under spawn_running, state=running" % run,
              str(by_leaf(t1, "spawn_running")))
    ctx.check(not by_leaf(t1, "spawn_settled"),
              "dump 1: joined and detached threads count nowhere",
              str(by_leaf(t1, "spawn_settled")))
    states = {(s["labels"].get("state") or [None])[0] for s in t1.samples}
    ctx.check(states <= {"running", "unjoined"} and None not in states,
              "dump 1: every sample has a state label", str(states))
    main = [s for s in t1.samples if "main" in s["labels"].get("origin", [])]
    ctx.check(len(main) == 1 and main[0]["labels"].get("state") == ["running"],
              "dump 1: the main thread counts once, running", str(main))
    ctx.check(t1.total("threads") == 1 + run + unj,
              "dump 1: values sum to running + unjoined threads (%d)" % (1 + run + unj),
              str(t1.total("threads")))
    want = "running_threads=%d unjoined_threads=%d" % (1 + run, unj)
    ctx.check(want in t1.comments, "dump 1: comments give both totals (%s)" % want,
              str(t1.comments))
    h1 = ctx.decode(finals[(p.pid, 1)]["heap"])
    ctx.check(any(re.search(r"\bunjoined_threads=%d\b" % unj, c) for c in h1.comments),
              "dump 1: heap comments carry unjoined_threads=%d" % unj, str(h1.comments))
    ctx.check(not by_leaf(t2, "spawn_unjoined") and not by_leaf(t2, "spawn_running"),
              "dump 2, after joining: neither is counted",
              "%s %s" % (by_leaf(t2, "spawn_unjoined"), by_leaf(t2, "spawn_running")))
    ctx.check("running_threads=1 unjoined_threads=0" in t2.comments,
              "dump 2: only the main thread", str(t2.comments))


if __name__ == "__main__":
    rlib.main(body, __doc__)
