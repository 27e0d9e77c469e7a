#!/usr/bin/env python3
"""reliability.errno - successful allocation calls leave errno alone.

rel_errno sets errno to a value of its own before every call (malloc,
calloc, realloc, posix_memalign, aligned_alloc, memalign, large blocks,
free, free(NULL)) and counts the calls after which it changed, on the main
thread and on fresh threads, enough calls to fill and drain heaptap's ring
many times at rate 1. Checked, without heaptap, at HEAPTAP_RATE=1 (every
call a sample: the walk, the table, the ring, the aggregation, a thread's
first set-up) and at the default rate:

  * the program runs to the end and checks every call;
  * under heaptap, no call changes errno that did not change it without
    heaptap (glibc's own successful calls leave it alone: 0 both ways);
  * heaptap says nothing.
"""

import rlib


def body(ctx):
    prog = ctx.example("rel_errno")
    base = rlib.baseline(ctx, [prog], "errno: ")
    bv = base.values()
    for label, env in (("rate 1", {"HEAPTAP_RATE": "1"}), ("default rate", {})):
        d = ctx.tmpdir("errno")
        env = dict(env, HEAPTAP_DIR=d)
        p = rlib.run(ctx, [prog], env=env, timeout=120)
        v = p.values()
        ctx.check(p.returncode == 0 and v.get("done") == "1",
                  "%s: the program runs to the end" % label, p.transcript())
        ctx.check(v.get("checked") == bv.get("checked") and int(v.get("checked", "0")) > 0,
                  "%s: every call checked (%s)" % (label, bv.get("checked")), p.transcript())
        ctx.check(v.get("changed") == bv.get("changed"),
                  "%s: errno changed after %s calls, as without heaptap" % (label, bv.get("changed")),
                  "changed=%s first=%s" % (v.get("changed"), v.get("first")))
        ctx.check(not p.heaptap_lines(), "%s: heaptap says nothing" % label,
                  str(p.heaptap_lines()))


if __name__ == "__main__":
    rlib.main(body, __doc__)
