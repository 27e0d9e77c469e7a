#!/usr/bin/env python3
"""heaptap's own resident memory is all in the comments (issue 12).

tests/integration/own_memory holds 200,000 live blocks of 32-80 bytes and
prints its RSS, then dumps. At HEAPTAP_RATE=1 every block is a sample, so
heaptap holds far more than the program: a record per sample, the table of
sampled pointers (258 MiB mapped at rate 1, nearly all of it touched by this
many pointers), rings, stacks. The heap profile's comment line with
heaptap_own_bytes= (what heaptap's allocator has handed out) must carry
heaptap_resident_bytes= (all of heaptap's memory resident), and

  * heaptap_resident_bytes >= heaptap_own_bytes;
  * rss_bytes - heaptap_resident_bytes is the RSS of the same program run
    without heaptap, within 15% + 4 MiB (what is left is the file pages of
    heaptap's code and libraries, 1-2 MiB);
  * heaptap_stats() reports resident_bytes >= own_bytes too.
"""
import os
import re

import htlib

BLOCKS = 200000
SLACK = 4 << 20
TOLERANCE = 0.15


def program(ctx):
    path = os.path.join(ctx.builddir or "", "tests", "own_memory")
    if not os.path.exists(path):
        raise htlib.Failure("test program not built: %s" % path)
    return path


def figure(lines, key):
    for line in lines:
        m = re.match(r"%s=(-?\d+)" % re.escape(key), line)
        if m:
            return int(m.group(1))
    return None


def body(ctx):
    ctx.need_protoc()
    prog = program(ctx)
    base = ctx.run([prog, BLOCKS], preload=False, timeout=120)
    base_rss = figure(base.stdout_lines, "rss_bytes")
    if not ctx.check(base.returncode == 0 and "done=1" in base.stdout_lines and base_rss,
                     "own_memory runs without heaptap", base.transcript()):
        return
    ctx.note("without heaptap: RSS %.1f MiB" % (base_rss / 1048576.0))

    r = ctx.run([prog, BLOCKS], env={"HEAPTAP_RATE": 1}, timeout=240)
    if not ctx.check(r.returncode == 0 and "done=1" in r.stdout_lines and "dump=0" in r.stdout_lines,
                     "own_memory dumps and exits 0 at HEAPTAP_RATE=1", r.transcript()):
        return
    heap, _ = r.wait_profiles(1, timeout=10)
    prof = ctx.decode(heap)
    htlib.check_no_drops(ctx, prof, "")
    line = [c for c in prof.comments if "heaptap_own_bytes=" in c]
    ctx.check(len(line) == 1 and "heaptap_resident_bytes=" in line[0],
              "the comment with heaptap_own_bytes= carries heaptap_resident_bytes=",
              "\n".join(prof.comments))
    fig = prof.figures()
    rss, own, resident = (fig.get(k) for k in ("rss_bytes", "heaptap_own_bytes",
                                                 "heaptap_resident_bytes"))
    if not ctx.check(None not in (rss, own, resident), "rss, own and resident figures present",
                     "\n".join(prof.comments)):
        return
    ctx.note("under heaptap: RSS %.1f MiB, heaptap_resident_bytes %.1f MiB, heaptap_own_bytes "
             "%.1f MiB, the program's share %.1f MiB" % (rss / 1048576.0, resident / 1048576.0,
                                                         own / 1048576.0,
                                                         (rss - resident) / 1048576.0))
    ctx.check(resident >= own, "heaptap_resident_bytes >= heaptap_own_bytes",
              "resident %d, own %d" % (resident, own))
    program_share = rss - resident
    limit = TOLERANCE * base_rss + SLACK
    ctx.check(abs(program_share - base_rss) <= limit,
              "rss_bytes - heaptap_resident_bytes is the RSS without heaptap, within 15% + 4 MiB",
              "rss %d - resident %d = %d; without heaptap %d (%+.1f MiB, limit %.1f MiB)" % (
                  rss, resident, program_share, base_rss,
                  (program_share - base_rss) / 1048576.0, limit / 1048576.0))

    m = [re.match(r"stats=(-?\d+) own_bytes=(\d+) resident_bytes=(\d+)", l)
         for l in r.stdout_lines]
    m = [x for x in m if x]
    if ctx.check(len(m) == 1 and int(m[0].group(1)) == 0, "heaptap_stats() returns 0",
                 r.stdout):
        s_own, s_res = int(m[0].group(2)), int(m[0].group(3))
        ctx.check(s_res >= s_own > 0, "heaptap_stats: resident_bytes >= own_bytes > 0",
                  "resident %d, own %d" % (s_res, s_own))


if __name__ == "__main__":
    htlib.main(body, __doc__)
