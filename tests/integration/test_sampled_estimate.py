#!/usr/bin/env python3
"""Sampled estimates at the default rate land within 15% of the truth.

examples/big_alloc keeps ~400 MiB from hold_big() and ~200 MiB from
hold_medium() (blocks of 4 KiB, 64 KiB and 1 MiB) and churns more through
churn(). At the default HEAPTAP_RATE (512 KiB) the unbiased inuse_space and
alloc_space per site must be within +-15% of what the program reports, in each
of three runs (each run draws its own random sample).
"""
import htlib

TOLERANCE = 0.15
RUNS = 3


def body(ctx):
    ctx.need_protoc()
    prog = ctx.example("big_alloc")
    for run in range(1, RUNS + 1):
        r = ctx.run([prog], timeout=240)
        tag = "run %d: " % run
        if not ctx.check(r.returncode == 0 and any(l.startswith("dump: rc=0") for l in r.stdout_lines),
                         tag + "big_alloc dumps and exits 0", r.transcript()):
            continue
        heap, _ = r.wait_profiles(1, timeout=5)
        prof = ctx.decode(heap)
        if run == 1:
            htlib.check_heap_shape(ctx, prof, rate=524288)
        expects = r.expects()
        htlib.check_no_drops(ctx, prof, tag)
        for fn in ("hold_big", "hold_medium"):
            for st in ("inuse_space", "alloc_space"):
                want = expects[fn][st]
                got = prof.anywhere_total(st, fn)
                err = (got - want) / want
                ctx.check(abs(err) <= TOLERANCE, "%s%s %s within 15%% of %d MiB" % (
                    tag, fn, st, want >> 20), "estimate %.1f MiB (%+.1f%%)" % (
                    got / 1048576.0, err * 100))
        want = expects["churn"]["alloc_space"]
        got = prof.anywhere_total("alloc_space", "churn")
        err = (got - want) / want
        ctx.check(abs(err) <= TOLERANCE, "%schurn alloc_space within 15%%" % tag,
                  "estimate %.1f MiB, truth %.1f MiB (%+.1f%%)" % (
                      got / 1048576.0, want / 1048576.0, err * 100))
        got = prof.anywhere_total("inuse_space", "churn")
        ctx.check(got == 0, "%schurn holds nothing in use" % tag, "estimate %d bytes" % got)


if __name__ == "__main__":
    htlib.main(body, __doc__)
