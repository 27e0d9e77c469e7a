#!/usr/bin/env python3
"""reliability.pause - heaptap_pause() and heaptap_resume().

rel_pause runs at HEAPTAP_RATE=1 (every allocation a sample): before_pause
keeps N blocks, then heaptap_pause(); during_pause keeps M blocks and
free_half frees half of before_pause's; then heaptap_resume(); after_resume
keeps K blocks. Checked:

  * both calls return 0, and heaptap_stats() reports paused=1 between them
    and 0 before and after;
  * the sample counter moves by exactly N and K around before_pause and
    after_resume, and not at all across the pause;
  * the frees made during the pause are still seen: live samples and the
    estimated live bytes drop by N/2 blocks;
  * the dump holds exactly before_pause N/2 blocks in use (N allocated),
    nothing from during_pause, and after_resume K;
  * without heaptap the program runs to the end (the calls return -ENOSYS).
"""

import htlib
import rlib


def body(ctx):
    ctx.need_protoc()
    p, v, d = rlib.api_runs(ctx, ctx.example("rel_pause"), "pause", "heaptap_pause()")
    ctx.check(v.get("pause") == "0" and v.get("resume") == "0",
              "heaptap_pause() and heaptap_resume() return 0", p.transcript())
    flags = (v.get("paused_before"), v.get("paused_during"), v.get("paused_after"))
    ctx.check(flags == ("0", "1", "0"), "stats.paused is 1 only while paused", str(flags))
    for what in ("samples", "live", "bytes"):
        for phase in ("before", "during", "after"):
            key = "%s_%s" % (what, phase)
            want = v.get("want_" + key)
            ctx.check(want is not None and v.get(key) == want,
                      "%s across %s: %s" % (what, phase, want),
                      "got %s" % v.get(key))
    ctx.check(not p.heaptap_lines(), "heaptap says nothing", str(p.heaptap_lines()))

    prof = rlib.api_heap(ctx, p, d)
    if prof is None:
        return
    htlib.compare_expects(ctx, prof, p.expects(), mode="leaf")
    ctx.check(not prof.samples_with("during_pause"),
              "no sample anywhere through during_pause",
              htlib.dump_stacks(prof, "during_pause"))


if __name__ == "__main__":
    rlib.main(body, __doc__)
