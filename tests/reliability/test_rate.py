#!/usr/bin/env python3
"""reliability.rate - heaptap_set_rate() from 1 to the default and back.

At rate 1 the table of sampled pointers counts nothing (free() asks it about
every block); at other rates it counts the keys at each home, free()'s
filter. Each change of rate makes heaptap's thread move every key into a
table of the other kind while the program allocates and frees. rel_rate
runs at HEAPTAP_RATE=1: alloc_one keeps N1 blocks; heaptap_set_rate to the
default, and a second thread frees half of them over ~300 ms while
churn_sampled allocates and frees; heaptap_set_rate(1), settle runs out the
gap drawn at the default rate, alloc_three keeps N3 blocks, and the second
thread frees a quarter of alloc_one's while the main one frees half of
alloc_three's and churn_exact allocates and frees. Checked:

  * both calls return 0 and heaptap_stats() reports the rate of each phase;
  * live samples move by exactly N1, -N1/2 and N3/2 - N1/4 across the
    phases: no free of a sampled block was missed or counted twice;
  * nothing was dropped;
  * the dump holds exactly alloc_one's N1/4 blocks in use (N1 allocated),
    alloc_three's N3/2 (N3 allocated), churn_exact's none in use (all of
    them allocated, each a sample), and nothing in use from churn_sampled
    or settle, whose blocks were all freed;
  * without heaptap the program runs to the end (the calls return -ENOSYS).
"""

import htlib
import rlib


def body(ctx):
    ctx.need_protoc()
    p, v, d = rlib.api_runs(ctx, ctx.example("rel_rate"), "to_default", "heaptap_set_rate()",
                            timeout=60)
    ctx.check(v.get("to_default") == "0" and v.get("to_one") == "0",
              "heaptap_set_rate() returns 0 both ways", p.transcript())
    rates = (v.get("rate_one"), v.get("rate_default"), v.get("rate_end"))
    ctx.check(rates == ("1", "524288", "1"), "stats.rate is 1, 524288, 1 by phase", str(rates))
    for phase in ("one", "default", "back"):
        key = "live_" + phase
        want = v.get("want_" + key)
        ctx.check(want is not None and v.get(key) == want,
                  "live samples across phase %s: %s" % (phase, want), "got %s" % v.get(key))
    ctx.check(v.get("dropped") == "0", "no samples or events dropped",
              "dropped=%s" % v.get("dropped"))
    ctx.check(not p.heaptap_lines(), "heaptap says nothing", str(p.heaptap_lines()))

    prof = rlib.api_heap(ctx, p, d)
    if prof is None:
        return
    htlib.check_no_drops(ctx, prof)
    htlib.compare_expects(ctx, prof, p.expects(), mode="leaf")
    for fn in ("churn_sampled", "settle"):
        for st in ("inuse_space", "inuse_objects"):
            got = prof.leaf_total(st, fn)
            ctx.check(got == 0, "%s %s == 0 (all freed)" % (fn, st),
                      "profile has %d\n%s" % (got, htlib.dump_stacks(prof, fn)))
    ctx.check(prof.leaf_total("alloc_objects", "churn_sampled") > 0,
              "churn_sampled was sampled at the default rate",
              htlib.dump_stacks(prof, "churn_sampled", "alloc_objects"))


if __name__ == "__main__":
    rlib.main(body, __doc__)
